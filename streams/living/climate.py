"""Planet climate from the physics state: starlight in, a surface temperature and a band out.

Units follow the physics engine (AU, years, solar masses). A star's luminosity
follows the main-sequence relation L ~ M^3.5 (solar units); a planet's
equilibrium temperature is ``278.6 K * (sum of L / d^2) ** 0.25``: 278.6 K is
a black body at 1 AU from the Sun. Summing the flux of every star makes the
nearest and most massive stars dominate, as they should, and covers binaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum

T_AT_1AU_K = 278.6
# Closer than this the formula diverges; a planet that close is being swallowed.
MIN_DISTANCE_AU = 1e-3


class Band(StrEnum):
    FROZEN = "FROZEN"
    COLD = "COLD"
    TEMPERATE = "TEMPERATE"
    HOT = "HOT"
    SCORCHING = "SCORCHING"
    DARK = "DARK"  # no star at all: rogue planet


# Upper bounds (K) of the bands, coldest first; above the last is SCORCHING.
_BANDS = ((200.0, Band.FROZEN), (260.0, Band.COLD), (320.0, Band.TEMPERATE), (400.0, Band.HOT))


def luminosity(star_mass: float) -> float:
    """Luminosity in solar units of a main-sequence star of ``star_mass`` solar masses."""
    return max(star_mass, 0.0) ** 3.5


def temperature_k(planet: tuple[float, float, float],
                  stars: Iterable[tuple[float, tuple[float, float, float]]]) -> float:
    """Equilibrium temperature of a planet at ``planet`` lit by ``(mass, position)`` stars."""
    flux = 0.0
    for mass, pos in stars:
        d = max(math.dist(planet, pos), MIN_DISTANCE_AU)
        flux += luminosity(mass) / (d * d)
    return T_AT_1AU_K * flux ** 0.25


def band(temp_k: float) -> Band:
    if temp_k <= 0.0:
        return Band.DARK
    for upper, name in _BANDS:
        if temp_k < upper:
            return name
    return Band.SCORCHING


# How far (K) outside its tolerated range a species still ekes out a living.
TOLERANCE_MARGIN_K = 30.0


def fitness(temp_k: float, temp_min_k: float, temp_max_k: float) -> float:
    """How well a species fits a temperature: 1 inside its range, falling to 0 at the margin."""
    if temp_min_k <= temp_k <= temp_max_k:
        return 1.0
    outside = temp_min_k - temp_k if temp_k < temp_min_k else temp_k - temp_max_k
    return max(0.0, 1.0 - outside / TOLERANCE_MARGIN_K)
