"""The local stack: real services as local processes, on loopback, data under one folder.

Start with :class:`~cosmic.stack.manager.Stack` (what ``cosmic stack`` drives);
each service is a :class:`~cosmic.stack.service.LocalService`.
"""

from cosmic.stack.manager import Stack

__all__ = ["Stack"]
