"""``python -m streams.living MODULE SETTINGS_JSON LOGLEVEL``: a Faust worker process.

What :class:`streams.living.service.FaustService` starts; see ``service._child``.
"""

import sys

from streams.living.service import _child

_child(sys.argv[1:])
