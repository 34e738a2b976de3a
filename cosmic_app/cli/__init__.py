"""The ``cosmic`` command line.

Each command family lives in its own module and registers a click group or
command here, in :data:`_COMMAND_MODULES`; the group is assembled lazily when
``main()`` runs, so importing this package has no side effects. Start with
:mod:`cosmic_app.cli.up` (``cosmic up``: the stack, the topics and every service
of the platform in one command), then the family you need: ``stack``,
``topics``, ``schemas``, ``physics``, ``replay``, ``log``, ``db``,
``connectors``, ``jobs``, ``auth``, ``audit``. A :class:`~cosmic.errors.CosmicError` raised by a
command is printed as one line and exits 1.
"""

from __future__ import annotations

import importlib
import sys

import click
from confluent_kafka import KafkaException

from cosmic.errors import CosmicError
from cosmic.settings import get_settings

# module path -> attribute holding a click command or group
_COMMAND_MODULES: tuple[tuple[str, str], ...] = (
    ("cosmic_app.cli.stack", "stack"),
    ("cosmic_app.cli.topics", "topics"),
    ("cosmic_app.cli.up", "up"),
    ("cosmic_app.cli.physics", "physics"),
    ("cosmic_app.cli.replay", "replay"),
    ("cosmic_app.cli.worlds", "world"),
    ("cosmic_app.cli.gateway", "gateway"),
    ("cosmic_app.cli.gateway", "watch"),
    ("cosmic_app.cli.schemas", "schemas"),
    ("cosmic_app.cli.log", "log"),
    ("cosmic_app.cli.db", "db"),
    ("cosmic_app.cli.connectors", "connectors"),
    ("cosmic_app.cli.jobs", "jobs"),
    ("cosmic_app.cli.security", "security"),
    ("cosmic_app.cli.auth", "auth"),
    ("cosmic_app.cli.auth", "audit"),
    ("cosmic_app.cli.lag", "lag_exporter"),
    ("cosmic_app.cli.k8s", "k8s"),
    ("cosmic_app.cli.chaos", "chaos"),
    ("cosmic_app.cli.living", "living"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cosmic-garden", prog_name="cosmic")
def cli() -> None:
    """Cosmic Garden event platform: run the local stack and the platform's services."""


def build_cli() -> click.Group:
    for module_name, attr in _COMMAND_MODULES:
        module = importlib.import_module(module_name)
        command = getattr(module, attr)
        if command.name not in cli.commands:
            cli.add_command(command)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cosmic`` console script."""
    group = build_cli()
    try:
        group.main(args=argv, prog_name="cosmic", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CosmicError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KafkaException as exc:
        # Kafka down or refusing: one line that says so, not a traceback.
        err = exc.args[0] if exc.args else exc
        detail = err.str() if hasattr(err, "str") else str(err)
        click.secho(f"error: kafka at {get_settings().kafka.bootstrap_servers}: {detail}",
                    fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
