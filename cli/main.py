"""``flywheel``: run the local cloud and drive a stack from the shell."""

from __future__ import annotations

import contextlib
import signal
import threading

import click

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Flywheel: continuous training for tabular models, on AWS or on this machine."""


@main.command()
@click.option("--port", default=5000, show_default=True, help="Port of the AWS endpoint (moto).")
@click.option("--gateway-port", default=8787, show_default=True, help="Port of the HTTP API.")
@click.option(
    "--config",
    "config_stack",
    default="dev",
    show_default=True,
    help="Take settings from Pulumi.<config>.yaml.",
)
def local(port: int, gateway_port: int, config_stack: str) -> None:
    """Run the local cloud in the foreground until Ctrl-C."""
    config = StackConfig.from_stack_file(config_stack)
    cloud = LocalCloud(flywheel_stack(config), config, stack="local")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with cloud.serving(port=port, gateway_port=gateway_port):
        exports = cloud.exports()
        click.echo(
            click.style("Flywheel local cloud is up", bold=True)
            + f" (settings of {config_stack!r}, stack 'local')"
        )
        click.echo(f"  AWS endpoint : {cloud.endpoint_url}")
        click.echo(f"  HTTP API     : {cloud.gateway.url if cloud.gateway else '-'}")
        click.echo(f"  buckets      : {', '.join(cloud.names.buckets.values())}")
        click.echo(f"  tables       : {', '.join(cloud.names.tables.values())}")
        click.echo("\nIn another shell:")
        for name, value in exports.items():
            click.echo(f"  export {name}={value}")
        click.echo("  aws s3 ls   # or any boto3 client; Ctrl-C here stops the cloud")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    click.echo("stopped")


if __name__ == "__main__":
    main()
