"""What a cell's verifier counts: lost, duplicated and out-of-order output per key.

Every row reduces its committed output to ``(key, seq)`` pairs in the order the
output holds them (a topic's offset order, a table's source offsets), where the
seeded input says which sequence numbers each key must have: ``1..n`` for a
world's ticks, the input's own numbers for a store's rows. The counts are then
the same for every row, and a cell passes on all three being zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tally:
    expected: int     # records the input implies
    seen: int         # records in the committed output
    lost: int         # expected, never seen
    duplicated: int   # seen more than once (each extra copy counts)
    unexpected: int   # seen, never expected (a record the input does not imply)
    out_of_order: int  # a record whose seq is not above its key's previous one

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.out_of_order)


def tally(expected: Mapping[str, Iterable[int]], output: Iterable[tuple[str, int]],
          *, ordered: bool = True) -> Tally:
    """Compare output pairs, in output order, with each key's expected sequence numbers.

    ``ordered=False`` where the output has no order to keep (then 0 out of order)."""
    want = {k: set(v) for k, v in expected.items()}
    counts: Counter[tuple[str, int]] = Counter()
    last: dict[str, int] = {}
    disorder = 0
    for key, seq in output:
        counts[(key, seq)] += 1
        if ordered and key in last and seq <= last[key]:
            disorder += 1
        last[key] = seq if key not in last else max(seq, last[key])
    lost = sum(1 for k, seqs in want.items() for s in seqs if (k, s) not in counts)
    dup = sum(c - 1 for c in counts.values() if c > 1)
    unexpected = sum(c for (k, s), c in counts.items() if s not in want.get(k, ()))
    return Tally(expected=sum(len(v) for v in want.values()), seen=sum(counts.values()),
                 lost=lost, duplicated=dup, unexpected=unexpected, out_of_order=disorder)
