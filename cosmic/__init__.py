"""Cosmic Garden event platform: the shared core.

Reading guide: start with :mod:`cosmic.settings` (what can be configured),
then :mod:`cosmic.topics` (every topic, declared once, and ``--route``
parsing), :mod:`cosmic.kafka` (how clients are built), :mod:`cosmic.errors`
(the one exception root), :mod:`cosmic.runtime` (platform services: thread
and child-process bases, and the loop that runs them side by side),
:mod:`cosmic.timeutil` (epoch milliseconds), :mod:`cosmic.admin` (topic
administration) and :mod:`cosmic.stack` (the local services). The ``cosmic``
command lives in :mod:`cosmic.cli`; :mod:`cosmic.smoke` is the heartbeat
pipeline ``cosmic up`` runs to prove the stack end to end.

Everything else imports from here; nothing here imports the processors
(``streams``, ``jobs``, ``connectors``) except the CLI, lazily, inside its
commands.
"""

from cosmic.errors import CosmicError
from cosmic.settings import Settings, get_settings

__all__ = ["CosmicError", "Settings", "get_settings"]
__version__ = "0.1.0"
