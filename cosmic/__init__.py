"""Cosmic Garden event platform: the shared core.

Reading guide: start with :mod:`cosmic.settings` (what can be configured),
then :mod:`cosmic.topics` (every topic, declared once), :mod:`cosmic.kafka`
(how clients are built), :mod:`cosmic.errors` (the one exception root), and
:mod:`cosmic.stack` (the local services). The ``cosmic`` command lives in
:mod:`cosmic.cli`.
"""

from cosmic.errors import CosmicError
from cosmic.settings import Settings, get_settings

__all__ = ["CosmicError", "Settings", "get_settings"]
__version__ = "0.1.0"
