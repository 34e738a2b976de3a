"""Mutations of valid bytes: what a broken producer, a disk or a wire does to a record."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few bit flips, byte replacements, cuts, insertions or duplications."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "repeat", "truncate"]))
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            j = draw(st.integers(i, min(len(data), i + 16)))
            del data[i:j]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            j = draw(st.integers(i, min(len(data), i + 16)))
            data[i:i] = data[i:j]
        else:
            del data[draw(st.integers(0, len(data))):]
    return bytes(data)
