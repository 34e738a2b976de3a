"""``python -m cosmic_app ARGS``: the ``cosmic`` command, for callers that hold a Python."""

from cosmic_app.cli import main

main()
