"""``python -m streams.living MODULE LOGLEVEL``: a Faust worker process.

What :class:`streams.living.service.FaustService` starts; see ``service._child``.
Settings come from the environment (``cosmic.settings.child_env``).
"""

import sys

from streams.living.service import _child

_child(sys.argv[1:])
