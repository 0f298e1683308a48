"""What the peer comparisons share: progress lines, repeated timing with its spread, peer versions."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Timing:
    """Seconds of each repeat of one side: the figure is the fastest, the spread says how steady."""

    seconds: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def spread(self) -> str:
        if len(self.seconds) < 2:
            return "1 run"
        median = statistics.median(self.seconds)
        most = max(self.seconds)
        return f"min {self.best:.2f} / median {median:.2f} / max {most:.2f} s over {len(self.seconds)}"


def timed[T](work: Callable[[], T], repeat: int) -> tuple[T, Timing]:
    seconds: list[float] = []
    result: T
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    return result, Timing(tuple(seconds))


def version_in(python: str, package: str) -> str:
    """``package``'s version in another environment's interpreter."""
    found = subprocess.run(
        [python, "-c", f"from importlib.metadata import version; print(version({package!r}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()


def ratio(flywheel: float, peer: float) -> str:
    """How many times faster Flywheel is (or slower), said the way round that reads."""
    if flywheel <= peer:
        return f"{peer / flywheel:.1f}x faster"
    return f"{flywheel / peer:.1f}x slower"
