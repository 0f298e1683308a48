"""What every ``flywheel`` command shares: the stack it talks to, error reporting, common options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click
from pydantic import BaseModel

from cli import actions, render
from cli.stack import settings_for
from shared.errors import ContractError, DataValidationError, FlywheelError, InvalidRequestError
from shared.metadata import RunStatus
from shared.services import Services


class Context:
    def __init__(self, stack: str) -> None:
        self.stack = stack
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services.from_settings(settings_for(self.stack))
        return self._services

    def invoke_trigger(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.invoke(self.services.settings.trigger_function, payload)

    def invoke(self, function: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A function's answer: its result, or Lambda's ``{errorType, errorMessage}`` when it failed."""
        answer: dict[str, Any] = self.services.function(function).invoke(payload).payload or {}
        return answer


def reported[F: Callable[..., Any]](command: F) -> F:
    """Turn Flywheel's errors into a clear message and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ContractError, DataValidationError, InvalidRequestError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except (FlywheelError, TimeoutError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    return run  # type: ignore[return-value]


def report_push(
    pushed: Any, wait: bool, as_json: bool, verdict: Callable[[], tuple[BaseModel, str, bool]]
) -> None:
    """The end of a ``push`` command: the upload, or with ``--wait`` the verdict (``verdict()`` answers it,
    its text, and whether the file was accepted); a refused file exits 2, like any invalid input."""
    if not wait:
        click.echo(
            render.as_json(pushed) if as_json else f"uploaded {pushed.uri} (version {pushed.version_id})"
        )
        return
    outcome, text, accepted = verdict()
    click.echo(render.as_json(outcome) if as_json else text)
    if not accepted:
        sys.exit(2)


def version_reference(value: str, param_hint: str = "'MODEL:VERSION'") -> tuple[str, int]:
    """``MODEL:VERSION`` (``churn:3``) as its name and number; a usage error (exit 2) if it is not one."""
    name, _, number = value.partition(":")
    if not name or not number.isdigit():
        raise click.BadParameter(
            f"expected MODEL:VERSION (e.g. churn:3), got {value!r}", param_hint=param_hint
        )
    return name, int(number)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
wait_option = click.option("--wait", is_flag=True, help="Follow the run; exit non-zero if it fails.")


pass_context = click.make_pass_decorator(Context)


def finish_run(ctx: Context, run_id: str, wait: bool, as_json: bool, extra: dict[str, Any]) -> None:
    """After a command started a run: with ``wait``, follow it to its end and exit 1 if it failed."""
    if not wait:
        if as_json:
            click.echo(render.as_json({**extra, "run_id": run_id}))
        return
    progress = (lambda _line: None) if as_json else click.echo
    view = actions.wait_for_run(ctx.services, run_id, progress)
    click.echo(render.as_json({**extra, "run": view}) if as_json else "\n" + render.run_details(view))
    if view.run.status is RunStatus.FAILED:
        sys.exit(1)
