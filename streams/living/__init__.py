"""Living worlds: the pure rules behind the ecosystem and civilization Faust apps.

Reading guide: :mod:`.climate` (starlight to temperature), :mod:`.ecology`
(population dynamics of a planet), :mod:`.ecosystem_state` (one world's
tick-ordered join of commands, ticks and deltas), :mod:`.civics`
(civilizations), :mod:`.outputs` (rule outputs as event records); then the
Kafka side: :mod:`.faust_codec` (Faust codec in our wire format), :mod:`.faustapp`
(shared app wiring), :mod:`.service` (workers under ``cosmic up``). The apps
themselves are :mod:`streams.ecosystem` and :mod:`streams.civilization`.
"""

from .service import FaustService, build_services

__all__ = ["FaustService", "build_services"]
