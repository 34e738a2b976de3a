"""``cosmic living``: the Faust apps (ecosystem, civilization) as standalone workers."""

from __future__ import annotations

import importlib

import click

from cosmic.settings import get_settings

APPS = {"ecosystem": "streams.ecosystem", "civilization": "streams.civilization"}


@click.group()
def living() -> None:
    """The living worlds: life on planets and the civilizations on them (Faust apps)."""


@living.command()
@click.argument("app", type=click.Choice(sorted(APPS)))
@click.option("--loglevel", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def run(app: str, loglevel: str) -> None:
    """Run one worker of APP in the foreground until Ctrl-C or SIGTERM (which leaves
    its group and commits); more workers of the same app share its partitions."""
    importlib.import_module(APPS[app]).main(get_settings(), loglevel)
