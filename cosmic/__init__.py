"""Cosmic Garden event platform: the shared core.

Reading guide: start with :mod:`cosmic.settings` (what can be configured),
then :mod:`cosmic.topics` (every topic, declared once, and ``--route``
parsing), :mod:`cosmic.kafka` (how clients are built), :mod:`cosmic.errors`
(the one exception root), :mod:`cosmic.runtime` (platform services: thread
and child-process bases, and the loop that runs them side by side),
:mod:`cosmic.timeutil` (epoch milliseconds), :mod:`cosmic.admin` (topic
administration) and :mod:`cosmic.stack` (the local services).

This is the bottom layer: every other package imports from here, and nothing
here imports them (``tests/unit/test_layers.py`` checks it). The ``cosmic``
command is the application's, in :mod:`cosmic_app`.
"""

from cosmic.errors import CosmicError
from cosmic.settings import Settings, get_settings

__all__ = ["CosmicError", "Settings", "get_settings"]
__version__ = "0.1.0"
