"""``python -m infra.preflight [STACK ...]``: every stack's program checked against AWS's rules.

Runs ``infra/__main__.py`` for each stack (all ``Pulumi.<stack>.yaml`` by default) under the real-shaped
provider mocks, then the API rules, the IAM linter and the ASL validator; prints every finding and exits 1
if there is one. ``--wheels`` also resolves the image's requirements for its platform.
"""

from __future__ import annotations

import argparse
import sys

from infra.preflight import asl, policies, rules, wheels
from infra.preflight.mocks import ROOT, Registered, run_main


def stacks() -> list[str]:
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml"))


def findings(resources: list[Registered]) -> list[rules.Finding]:
    """Every check of one deployment."""
    return rules.check(resources) + policies.lint(resources) + asl.validate(resources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="*", help="stacks to check (default: every Pulumi.<stack>.yaml)")
    parser.add_argument("--wheels", action="store_true", help="also resolve requirements.txt for the image")
    args = parser.parse_args(argv)

    failed = False
    for stack in args.stacks or stacks():
        resources, _ = run_main(stack)
        found = findings(resources)
        print(f"preflight {stack}: {len(resources)} resources, {len(found)} finding(s)")
        for finding in found:
            print(f"  {finding}")
        failed |= bool(found)
    if args.wheels:
        resolution = wheels.resolve()
        print(f"preflight image: {resolution.summary()}")
        failed |= not resolution.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
