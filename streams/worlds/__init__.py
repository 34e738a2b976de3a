"""The world service: where the physics engine meets the event log.

The engine (:mod:`streams.physics`) is pure computation and knows nothing of
Kafka; this package runs worlds of the game on it, exactly once, from the
command log. Start reading at :mod:`.worker` (the consumer-group worker and
its transaction per loop), then :mod:`.state` (a world of the game and its
hash), :mod:`.commands` (how one command changes a world, and one tick),
:mod:`.events` (states and outcomes to and from event records),
:mod:`.recovery` (rebuild by verified replay), :mod:`.pointintime` (replay to
any tick, fork, restore), :mod:`.eventlog` (reading the log from Kafka or an
export), :mod:`.deltas` (dead-reckoned deltas for frontends) and
:mod:`.scenario` (the demo star system and synthetic players' commands).
"""
