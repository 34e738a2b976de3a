"""Long-running stream processors: the physics engine, the world service, the Faust apps.

What lives here, and where to start reading:

- :mod:`streams.physics`: the N-body engine, pure computation (numpy, numba,
  cupy) that knows nothing of Kafka. Start at :mod:`streams.physics.world`.
- :mod:`streams.worlds`: the world service, where the engine meets the log:
  the exactly-once worker, recovery, point-in-time replay, deltas. Start at
  :mod:`streams.worlds.worker`.
- :mod:`streams.ecosystem` and :mod:`streams.civilization`: the two Faust
  apps; their rules and wiring are in :mod:`streams.living`.
- :mod:`streams.players`: synthetic players that ``cosmic up`` runs so a plain
  start shows living worlds.

Frontends do not talk to these processes: they read the delta topics (a
gateway is planned in the design, not built yet).
"""
