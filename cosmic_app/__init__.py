"""Cosmic Garden's application layer: the ``cosmic`` command and the smoke pipeline.

The top of the layers (docs/ARCHITECTURE.md): it may import every package
below it (``cosmic``, ``schemas``, ``streams``, ``jobs``, ``connectors``),
and none of them imports it.

Reading guide: start with :mod:`cosmic_app.cli` (the console script, one
module per command family) and :mod:`cosmic_app.cli.up` (every service that
``cosmic up`` runs, in one list); :mod:`cosmic_app.smoke` is the heartbeat
pipeline ``cosmic up`` runs to prove the stack end to end. ``python -m
cosmic_app ARGS`` is the ``cosmic`` command.
"""
