"""One world as the ecosystem app sees it: bodies, planets with life, and a tick-ordered join.

The ecosystem reads three logs of a world: commands (``SeedSpecies``,
``FoundCivilization``), physics ticks and state deltas. Kafka orders records
within a partition of one topic, not across topics, so a world applies tick
``n`` only once it holds tick ``n``'s delta and every command up to the tick's
``last_command_offset`` (a command is applied at the tick that the physics
worker applied it at). The result depends on the logs alone, not on the order
in which a consumer happened to fetch them: replays produce the same events.

State is plain JSON-able data (``to_dict`` / ``from_dict``) so Faust tables
can keep it in their changelog: the world (bodies, buffers, clock) keyed by
world id, each planet's life keyed by ``world/planet``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosmic.timeutil import to_ms
from schemas import columnar
from schemas.catalog import short_name
from schemas.models import BodyKind

from . import ecology
from .climate import temperature_k

# Body kinds in the order of the Avro enum (the codes deltas carry).
KINDS: tuple[str, ...] = tuple(kind.value for kind in BodyKind)
HABITABLE = frozenset({"PLANET", "MOON"})
# A tick waits at most this many later ticks for its delta (deltas expire before ticks).
MAX_WAITING_TICKS = 64


@dataclass(frozen=True, slots=True)
class EcoParams:
    step_every: int = 10  # ticks per ecosystem step
    # Ecological years per simulated orbital year: life runs faster than orbits,
    # so a demo world shows generations within a minute.
    time_scale: float = 50.0


@dataclass(frozen=True, slots=True)
class EcoEvent:
    """An EcosystemEvent body for the log."""

    planet_id: int
    tick: int
    ts: int
    kind: str
    body: dict[str, Any]
    species_id: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    command: dict[str, Any]  # command_id, player_id, name, body
    offset: int
    tick: int
    ts: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class PlanetStatus:
    """A planet's state after a step (or at a founding request), for the civilization app."""

    record: dict[str, Any]


Output = EcoEvent | Rejection | PlanetStatus


@dataclass
class Planet:
    planet_id: int
    kind: str
    temp_k: float = 0.0
    destroyed: bool = False
    species: dict[int, ecology.Population] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"planet_id": self.planet_id, "kind": self.kind, "temp_k": self.temp_k,
                "destroyed": self.destroyed,
                "species": [self.species[k].to_dict() for k in sorted(self.species)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Planet:
        species = {int(s["species_id"]): ecology.Population.from_dict(s) for s in d["species"]}
        return cls(int(d["planet_id"]), str(d["kind"]), float(d["temp_k"]),
                   bool(d["destroyed"]), species)

    def population(self) -> int:
        return int(sum(p.count for p in self.species.values()))


def planet_key(world_id: str, planet_id: int) -> str:
    return f"{world_id}/{planet_id}"


class EcosystemWorld:
    """Pure state machine of one world's life; the Faust agent only loads, calls and saves."""

    def __init__(self, world_id: str, params: EcoParams | None = None,
                 state: dict[str, Any] | None = None,
                 planets: dict[int, Planet] | None = None) -> None:
        self.world_id = world_id
        self.params = params or EcoParams()
        s = state or {}
        # body id -> [kind, mass, x, y, z]; asteroids are not kept (nothing lives there)
        self.bodies: dict[int, list[Any]] = {int(k): v for k, v in s.get("bodies", {}).items()}
        self.planet_ids: list[int] = list(s.get("planets", []))
        self.last_tick: int | None = s.get("last_tick")
        self.last_step_tick: int | None = s.get("last_step_tick")
        self.last_step_sim_time: float | None = s.get("last_step_sim_time")
        self.ticks: list[list[Any]] = list(s.get("ticks", []))  # [tick, last_offset, sim_time, ts]
        self.deltas: list[list[Any]] = list(s.get("deltas", []))  # [tick, changed, removed]
        self.commands: list[list[Any]] = list(s.get("commands", []))  # [offset, command]
        self.max_offset: int = int(s.get("max_offset", -1))
        self.planets: dict[int, Planet] = planets or {}
        self.dirty: set[int] = set()

    def to_dict(self) -> dict[str, Any]:
        return {"bodies": {str(k): v for k, v in sorted(self.bodies.items())},
                "planets": self.planet_ids, "last_tick": self.last_tick,
                "last_step_tick": self.last_step_tick,
                "last_step_sim_time": self.last_step_sim_time,
                "ticks": self.ticks, "deltas": self.deltas, "commands": self.commands,
                "max_offset": self.max_offset}

    # -- inputs -------------------------------------------------------------------

    def on_command(self, offset: int, record: dict[str, Any]) -> list[Output]:
        name, body = record["command"]
        name = short_name(str(name))
        self.max_offset = max(self.max_offset, offset)
        if name in ("SeedSpecies", "FoundCivilization"):
            self.commands.append([offset, {
                "command_id": str(record["command_id"]), "player_id": str(record["player_id"]),
                "name": name, "body": _plain(body)}])
        return self._drain()

    def on_tick(self, record: dict[str, Any]) -> list[Output]:
        tick = int(record["tick"])
        if self.last_tick is not None and tick <= self.last_tick:
            return []  # a replayed tick: already applied
        self.ticks.append([tick, record.get("last_command_offset"), float(record["sim_time"]),
                           int(to_ms(record["ts"]))])
        return self._drain()

    def on_delta(self, record: dict[str, Any]) -> list[Output]:
        b = columnar.unpack_bodies(record)
        changed = [[int(i), KINDS[int(k)] if int(k) < len(KINDS) else "ASTEROID", float(m),
                    float(p[0]), float(p[1]), float(p[2])]
                   for i, k, m, p in zip(b.ids, b.kinds, b.masses, b.positions, strict=True)
                   if int(k) != 3]
        removed = [int(i) for i in columnar.removed_ids(record)]
        tick = int(record["tick"])
        if self.last_tick is not None and tick <= self.last_tick:
            # Late (its tick went ahead without it): bodies still matter for climate.
            return self._apply_delta(tick, changed, removed, ts=0)
        self.deltas.append([tick, changed, removed])
        return self._drain()

    def on_snapshot(self, record: dict[str, Any]) -> None:
        """Learn every body at once (a consumer that starts after the first deltas expired)."""
        b = columnar.unpack_bodies(record)
        for i, k, m, p in zip(b.ids, b.kinds, b.masses, b.positions, strict=True):
            if int(k) != 3 and int(i) not in self.bodies:
                self.bodies[int(i)] = [KINDS[int(k)], float(m), float(p[0]), float(p[1]), float(p[2])]

    # -- the join -----------------------------------------------------------------

    def _ready(self, tick: list[Any]) -> bool:
        last_offset = tick[1]
        if last_offset is not None and self.max_offset < last_offset:
            return False
        delta_ticks = {d[0] for d in self.deltas}
        return (tick[0] in delta_ticks or any(t > tick[0] for t in delta_ticks)
                or len(self.ticks) > MAX_WAITING_TICKS)

    def _drain(self) -> list[Output]:
        out: list[Output] = []
        self.ticks.sort(key=lambda t: t[0])
        while self.ticks and self._ready(self.ticks[0]):
            tick, last_offset, sim_time, ts = self.ticks.pop(0)
            if self.last_tick is not None and tick <= self.last_tick:
                continue
            self.deltas.sort(key=lambda d: d[0])
            while self.deltas and self.deltas[0][0] <= tick:
                _, changed, removed = self.deltas.pop(0)
                out += self._apply_delta(tick, changed, removed, ts)
            if last_offset is not None:
                due = sorted((c for c in self.commands if c[0] <= last_offset), key=lambda c: c[0])
                self.commands = [c for c in self.commands if c[0] > last_offset]
                for offset, command in due:
                    out += self._apply_command(offset, command, tick, ts)
            self.last_tick = tick
            if self.last_step_tick is None:
                self.last_step_tick, self.last_step_sim_time = tick, sim_time
            elif tick - self.last_step_tick >= self.params.step_every:
                years = (sim_time - (self.last_step_sim_time or sim_time)) * self.params.time_scale
                self.last_step_tick, self.last_step_sim_time = tick, sim_time
                out += self._step(tick, ts, years)
        return out

    # -- bodies -------------------------------------------------------------------

    def _apply_delta(self, tick: int, changed: list[list[Any]], removed: list[int],
                     ts: int) -> list[Output]:
        before = {i: b[1] for i, b in self.bodies.items()}
        for i, kind, mass, x, y, z in changed:
            self.bodies[int(i)] = [kind, mass, x, y, z]
        out: list[Output] = []
        for gone in sorted(removed):
            last = self.bodies.pop(gone, None)
            if last is None or last[0] not in HABITABLE:
                continue
            survivors = [(math.dist(last[2:], c[3:]), int(c[0])) for c in changed
                         if int(c[0]) in before and c[2] > before[int(c[0])]]
            merged_into = min(survivors)[1] if survivors else None
            cause = "collision" if merged_into is not None else "removed"
            out += self._destroy(gone, last[0], tick, ts, cause, merged_into)
        return out

    def _destroy(self, planet_id: int, kind: str, tick: int, ts: int, cause: str,
                 merged_into: int | None) -> list[Output]:
        planet = self.planets.setdefault(planet_id, Planet(planet_id, kind))
        if planet_id not in self.planet_ids:
            self.planet_ids.append(planet_id)
        out: list[Output] = [
            EcoEvent(planet_id, tick, ts, "SpeciesExtinct",
                     {"species_id": sid, "cause": "planet destroyed"}, sid)
            for sid in sorted(planet.species)]
        out.append(EcoEvent(planet_id, tick, ts, "PlanetDestroyed",
                            {"cause": cause, "merged_into": merged_into}))
        planet.species.clear()
        planet.destroyed = True
        self.dirty.add(planet_id)
        out.append(self._status(planet, tick, ts, 0.0))
        return out

    def _stars(self) -> list[tuple[float, tuple[float, float, float]]]:
        return [(b[1], (b[2], b[3], b[4])) for b in self.bodies.values() if b[0] == "STAR"]

    def _temperature(self, body_id: int) -> float:
        b = self.bodies[body_id]
        return temperature_k((b[2], b[3], b[4]), self._stars())

    # -- commands -----------------------------------------------------------------

    def _apply_command(self, offset: int, command: dict[str, Any], tick: int,
                       ts: int) -> list[Output]:
        body = command["body"]
        pid = int(body["planet_id"])
        known = self.bodies.get(pid)
        planet = self.planets.get(pid)

        def reject(reason: str, message: str) -> list[Output]:
            return [Rejection(command, offset, tick, ts, reason, message)]

        if command["name"] == "FoundCivilization":
            # Judged by the civilization app, with the planet as it is at this tick.
            if known is None or known[0] not in HABITABLE or (planet and planet.destroyed):
                planet = Planet(pid, known[0] if known else "UNKNOWN", destroyed=True)
            elif planet is None:
                planet = Planet(pid, known[0], self._temperature(pid))
            return [self._status(planet, tick, ts, 0.0, found=(offset, command))]
        if known is None or (planet is not None and planet.destroyed):
            return reject("UNKNOWN_PLANET", f"no planet or moon {pid} in world {self.world_id}")
        if known[0] not in HABITABLE:
            return reject("NOT_PERMITTED", f"body {pid} is a {known[0]}: "
                          "only planets and moons can hold life")
        sid = int(body["species_id"])
        if planet is not None and sid in planet.species:
            return reject("DUPLICATE_ID", f"species {sid} already lives on planet {pid}")
        if planet is not None and len(planet.species) >= ecology.MAX_SPECIES_PER_PLANET:
            return reject("NOT_PERMITTED", f"planet {pid} already holds "
                          f"{ecology.MAX_SPECIES_PER_PLANET} species")
        if planet is None:
            planet = Planet(pid, known[0], self._temperature(pid))
            self.planets[pid] = planet
            if pid not in self.planet_ids:
                self.planet_ids.append(pid)
        traits = ecology.Traits.from_record(body["traits"])
        n = int(body["initial_population"])
        planet.species[sid] = ecology.Population(sid, traits, float(n), n)
        self.dirty.add(pid)
        return [EcoEvent(pid, tick, ts, "SpeciesEmerged", {
            "species_id": sid, "parent_species_id": None, "population": n,
            "traits": traits.to_record()}, sid)]

    # -- stepping -----------------------------------------------------------------

    def _step(self, tick: int, ts: int, years: float) -> list[Output]:
        live = {pid: p for pid, p in self.planets.items() if not p.destroyed and pid in self.bodies}
        # Empty habitats for every other planet and moon: migrants may settle there.
        habitats: dict[int, ecology.Habitat] = {}
        for bid in sorted(self.bodies):
            kind = self.bodies[bid][0]
            if kind not in HABITABLE or (bid in self.planets and self.planets[bid].destroyed):
                continue
            planet = live.get(bid) or Planet(bid, kind)
            planet.temp_k = self._temperature(bid)
            habitats[bid] = ecology.Habitat(planet.temp_k, f"{self.world_id}/{bid}", planet.species)
            live[bid] = planet
        out: list[Output] = []
        positions = {bid: (self.bodies[bid][2], self.bodies[bid][3], self.bodies[bid][4])
                     for bid in habitats}
        for pid, _ in ecology.migrate(habitats, positions, years):
            if pid not in self.planets:
                self.planets[pid] = live[pid]
                self.planet_ids.append(pid)
        for pid in sorted(self.planets):
            planet = self.planets[pid]
            if planet.destroyed or pid not in habitats:
                continue
            had_life = bool(planet.species)
            for c in ecology.step(habitats[pid], years, tick):
                out.append(EcoEvent(pid, tick, ts, c.kind, c.body, c.species_id))
            self.dirty.add(pid)
            if had_life or planet.species:
                out.append(self._status(planet, tick, ts, years))
        return out

    def _status(self, planet: Planet, tick: int, ts: int, years: float,
                found: tuple[int, dict[str, Any]] | None = None) -> PlanetStatus:
        species = sorted(planet.species.values(), key=lambda p: (-p.count, p.species_id))
        cap = sum(ecology.capacity(p.traits, ecology.fit(p, planet.temp_k)) for p in species
                  if p.traits.diet != "CARNIVORE")
        request = None
        if found is not None:
            offset, command = found
            b = command["body"]
            request = {"command_id": command["command_id"], "player_id": command["player_id"],
                       "civilization_id": int(b["civilization_id"]), "name": str(b["name"]),
                       "command_offset": offset}
        return PlanetStatus({
            "world_id": self.world_id, "planet_id": planet.planet_id, "tick": tick,
            "known": planet.kind in HABITABLE, "destroyed": planet.destroyed,
            "temperature_k": planet.temp_k, "population": planet.population(),
            "carrying_capacity": float(cap), "species_count": len(species),
            "dominant_species_id": species[0].species_id if species else None,
            "years": years, "found": request, "ts": ts})


def _plain(value: Any) -> Any:
    """A decoded Avro value as JSON-able data (enums are already strings)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
