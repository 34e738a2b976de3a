"""The per-client frame as numba kernels over plain arrays, and its wire bytes.

:meth:`.session.Subscriber.frame` was some sixty numpy calls on arrays of a few
hundred bodies, each paying microseconds of dispatch, then protobuf ``extend``
calls: about 0.7 ms per client per tick. Now it is one call of :func:`frame`:
find the view's x-slab, walk it (:func:`membership`: who is in view, who stays,
enters, leaves, how far each stayer moved on the grid), then choose the updates
that fit the budget and write the ``Frame`` message's bytes (:func:`encode`).

The bits are the numpy code's, which ``tests/unit/test_gateway_framing.py``
checks frame by frame against that code:

- distances are ``sqrt((dx*dx + dy*dy) + dz*dz)``, the order ``np.linalg.norm``
  sums in; no ``fastmath``, so no reassociation and no fused multiply-adds;
- ``log2(1 + steps)`` is numpy's, never the kernel's (numpy's SIMD ``log2`` and
  libm's may differ in the last bit, and the weights decide the order updates go
  in): a table of numpy's values for small steps (:func:`log2_table`), else the
  caller asks numpy and calls again;
- candidates go by a stable merge sort on ``-priority`` (ties keep index order,
  NaN last, as ``np.argsort(kind="stable")``), and only when the budget binds;
- the bytes are what protobuf writes for ``schemas/gateway.proto``'s ``Frame``:
  fields in number order, proto3 scalars left out when their bits are zero (so
  ``-0.0`` is written), repeated fields packed, ``sint64`` zigzagged, ``int64``
  as ten-byte two's complement when negative.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

Floats = npt.NDArray[np.float64]

# Slab members' fate in this frame.
STAYS, ENTERS = 1, 2

_U0 = np.uint64(0)
_U7 = np.uint64(7)
_U127 = np.uint64(0x7F)
_U128 = np.uint64(0x80)
_UFF = np.uint64(0xFF)


@njit(cache=True)
def _vlen(u):
    """Bytes of an unsigned varint. Without branches: which lengths come next is data
    (a mispredicted branch costs more than these nine shifts)."""
    n = 1
    for shift in range(7, 64, 7):
        n += int((u >> np.uint64(shift)) != _U0)
    return n


@njit(cache=True)
def _zz(v):  # sint64's zigzag
    return np.uint64((v << 1) ^ (v >> 63))


@njit(cache=True)
def _put(buf, pos, u):
    while u >= _U128:
        buf[pos] = np.uint8((u & _U127) | _U128)
        u >>= _U7
        pos += 1
    buf[pos] = np.uint8(u)
    return pos + 1


@njit(cache=True)
def _put_fixed64(buf, pos, bits):
    u = np.uint64(bits)
    for k in range(8):
        buf[pos + k] = np.uint8((u >> np.uint64(8 * k)) & _UFF)
    return pos + 8


@njit(cache=True)
def _put_len(buf, pos, tag, length):
    buf[pos] = np.uint8(tag)
    return _put(buf, pos + 1, np.uint64(length))


@njit(cache=True)
def _field_len(length):  # tag + length prefix + payload of a length-delimited field
    return 1 + _vlen(np.uint64(length)) + length


@njit(boundscheck=False, cache=True)
def _find(sorted_ids, value):  # the index of value in sorted_ids, or -1
    lo, hi = 0, sorted_ids.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_ids[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    if lo < sorted_ids.shape[0] and sorted_ids[lo] == value:
        return lo
    return -1


@njit(boundscheck=False, cache=True)
def _radix_order(keys, limit):
    """``np.argsort(keys, kind="stable")`` for ints in ``0 .. limit - 1``: a byte at a
    time (LSD radix), so no comparison of keys mispredicts, as a quicksort's do."""
    n = keys.shape[0]
    idx = np.arange(n)
    tmp = np.empty(n, np.int64)
    count = np.empty(257, np.int64)
    shift = 0
    while True:
        count[:] = 0
        for r in range(n):
            count[((keys[idx[r]] >> shift) & 0xFF) + 1] += 1
        for d in range(256):
            count[d + 1] += count[d]
        for r in range(n):
            d = (keys[idx[r]] >> shift) & 0xFF
            tmp[count[d]] = idx[r]
            count[d] += 1
        idx, tmp = tmp, idx
        shift += 8
        if (limit - 1) >> shift <= 0:
            return idx


@njit(boundscheck=False, cache=True)
def membership(ids, qpos, qvel, revisions, slab, slab_positions, geom, is_box,
               b_ids, b_qpos, b_qvel, b_sent, b_rev, predicted, sim_time, ratio):
    """The bodies in view (tick indices, ascending), each one's fate (:data:`STAYS` or
    :data:`ENTERS`), baseline slot and distance to the view's centre; the stayers' grid
    changes and the largest of their steps; the leaves.

    ``slab``: tick indices of the bodies in the view's x-slab, in any order, and
    ``slab_positions`` their positions (a slice of the tick's, read in turn). ``geom``:
    centre (3), the sphere's and the grown sphere's :func:`square_bound`, then for a
    box low (3), high (3), grown low
    (3), grown high (3)."""
    m = slab.shape[0]
    nb = b_ids.shape[0]
    # Who could be in view: inside it, or inside it grown (if held). Collected without
    # branching on the data, which is what a scan of a thousand bodies mostly costs.
    pick = np.empty(m, np.int64)
    pick_dist = np.empty(m)
    pick_inside = np.empty(m, np.bool_)
    pick_grown = np.empty(m, np.bool_)
    n_pick = 0
    for j in range(m):
        dx = slab_positions[j, 0] - geom[0]
        dy = slab_positions[j, 1] - geom[1]
        dz = slab_positions[j, 2] - geom[2]
        d2 = (dx * dx + dy * dy) + dz * dz  # the distance is its sqrt, taken for picks only
        if is_box:
            inside = True
            grown = True
            for a in range(3):
                x = slab_positions[j, a]
                inside = inside & (x >= geom[5 + a]) & (x <= geom[8 + a])
                grown = grown & (x >= geom[11 + a]) & (x <= geom[14 + a])
        else:
            inside = d2 <= geom[3]
            grown = d2 <= geom[4]
        pick[n_pick] = slab[j]
        pick_dist[n_pick] = d2
        pick_inside[n_pick] = inside
        pick_grown[n_pick] = grown
        n_pick += int(inside | grown)
    # In the tick's order, which is the ids': then the baseline is a merge away.
    order = _radix_order(pick[:n_pick], ids.shape[0])
    sel = np.empty(n_pick, np.int64)
    fate = np.empty(n_pick, np.int8)
    slot = np.empty(n_pick, np.int64)
    dist = np.empty(n_pick)
    kept = np.zeros(nb, np.bool_)
    n_in = 0
    n_stay = 0
    p = 0
    for r in range(n_pick):
        o = order[r]
        i = pick[o]
        while p < nb and b_ids[p] < ids[i]:
            p += 1
        held = p < nb and b_ids[p] == ids[i]
        if not (pick_inside[o] or (held and pick_grown[o])):
            continue
        sel[n_in] = i
        dist[n_in] = np.sqrt(pick_dist[o])
        slot[n_in] = p if held else -1
        if held:
            kept[p] = True  # a stayer, or re-entering in full: it does not leave
        if held and b_rev[p] == revisions[i]:
            fate[n_in] = STAYS
            n_stay += 1
        else:
            fate[n_in] = ENTERS
        n_in += 1
    sel, fate, slot, dist = sel[:n_in], fate[:n_in], slot[:n_in], dist[:n_in]
    n_leave = nb
    for q in range(nb):
        if kept[q]:
            n_leave -= 1
    leaves = np.empty(n_leave, np.int64)
    k = 0
    for q in range(nb):
        if not kept[q]:
            leaves[k] = b_ids[q]
            k += 1

    dq = np.empty((n_stay, 3), np.int64)
    dv = np.empty((n_stay, 3), np.int64)
    moved = np.zeros(n_stay, np.bool_)
    steps = np.zeros(n_stay, np.int64)
    k = 0
    for r in range(n_in):
        if fate[r] != STAYS:
            continue
        i = sel[r]
        b = slot[r]
        elapsed = (sim_time - b_sent[b]) * ratio
        biggest = 0
        changed = False
        for a in range(3):
            shown = b_qpos[b, a]
            if predicted:
                shown += np.int64(np.floor(b_qvel[b, a] * elapsed + 0.5))
            e = qpos[i, a] - shown
            f = qvel[i, a] - b_qvel[b, a]
            dq[k, a] = e
            dv[k, a] = f
            changed = changed | (e != 0) | (f != 0)
            biggest = max(biggest, abs(e))
        moved[k] = changed
        steps[k] = biggest
        k += 1
    return sel, fate, slot, dist, leaves, dq, dv, moved, steps


@njit(boundscheck=False, cache=True)
def _before(a, b):  # numpy's sort order for floats: NaN last
    return a < b or (b != b and a == a)


@njit(boundscheck=False, cache=True)
def _stable_order(keys):
    """``np.argsort(keys, kind="stable")``: a merge sort, ties in index order."""
    n = keys.shape[0]
    idx = np.arange(n)
    tmp = np.empty(n, np.int64)
    width = 1
    while width < n:
        lo = 0
        while lo < n:
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if _before(keys[idx[j]], keys[idx[i]]):
                    tmp[k] = idx[j]
                    j += 1
                else:
                    tmp[k] = idx[i]
                    i += 1
                k += 1
            while i < mid:
                tmp[k] = idx[i]
                i += 1
                k += 1
            while j < hi:
                tmp[k] = idx[j]
                j += 1
                k += 1
            lo = hi
        idx, tmp = tmp, idx
        width *= 2
    return idx


@njit(boundscheck=False, cache=True)
def encode(ids, kinds, mass_bits, radius_bits, qpos, qvel, revisions, sel, fate,
           slot, dist, leaves, dq, dv, moved, log2_steps,
           b_qpos, b_qvel, b_sent, b_prio, size, tokens, overhead, predicted, sim_time, head):
    """Choose the updates that fit ``tokens`` and write the frame; returns its bytes,
    how many moved bodies wait, and the new baseline (ids, grid position and velocity,
    sent-at times, revisions, priorities), ids ascending.

    ``head``: tick, base tick, the bits of ``sim_time``, snapshot, the bits of the position
    and velocity steps, produced ms, encoding; the grid steps and encoding are written
    only in a snapshot."""
    m = sel.shape[0]
    n_stay = dq.shape[0]
    snapshot = head[3] != 0

    # Priorities: every stayer that moved gains its weight.
    priority = np.empty(n_stay)
    k = 0
    n_enter = 0
    enter_cost = 0
    for j in range(m):
        if fate[j] == STAYS:
            w = (1.0 + log2_steps[k]) * (size / (size + dist[j]))
            priority[k] = b_prio[slot[j]] + (w if moved[k] else 0.0)
            k += 1
        else:
            n_enter += 1
            i = sel[j]
            for a in range(3):
                enter_cost += _vlen(_zz(qpos[i, a])) + _vlen(_zz(qvel[i, a]))
    if n_enter:
        enter_cost += n_enter * 27
    n_leave = leaves.shape[0]
    cost = overhead + enter_cost + 9 * n_leave

    # The moved ones by descending priority, while they fit.
    n_cand = 0
    for k in range(n_stay):
        if moved[k]:
            n_cand += 1
    cand = np.empty(n_cand, np.int64)
    keys = np.empty(n_cand)
    c = 0
    for k in range(n_stay):
        if moved[k]:
            cand[c] = k
            keys[c] = -priority[k]
            c += 1
    each = np.empty(n_cand, np.int64)
    # Bytes of each candidate's position and velocity values, for the frame's sizes below.
    p_bytes = np.empty(n_stay, np.int64)
    v_bytes = np.empty(n_stay, np.int64)
    total = 0
    for c in range(n_cand):
        k = cand[c]
        pb = vb = 0
        for a in range(3):  # PREDICTED leaves zeros out (_vlen(_zz(0)) is 1)
            e, f = dq[k, a], dv[k, a]
            pb += _vlen(_zz(e)) - int(predicted & (e == 0))
            vb += _vlen(_zz(f)) - int(predicted & (f == 0))
        p_bytes[k] = pb
        v_bytes[k] = vb
        size_c = (2 if predicted else 1) + pb + vb
        each[c] = size_c
        total += size_c
    room = tokens - cost
    sent = np.zeros(n_stay, np.bool_)
    n_send = 0
    if room > 0 and total <= room:  # all fit, in whatever order
        n_send = n_cand
        for c in range(n_cand):
            sent[cand[c]] = True
    elif room > 0:
        order = _stable_order(keys)
        spent = 0
        for c in range(n_cand):
            spent += each[order[c]]
            if spent > room:
                break
            sent[cand[order[c]]] = True
            n_send += 1

    # Sizes of each packed field, then of the messages around them.
    e_ids = e_kinds = e_pos = e_vel = 0
    u_steps = u_pos = u_vel = u_changed = u_res = 0
    k = 0
    prev = 0
    for j in range(m):
        i = sel[j]
        if fate[j] == ENTERS:
            e_ids += _vlen(np.uint64(ids[i]))
            e_kinds += _vlen(np.uint64(kinds[i]))
            for a in range(3):
                e_pos += _vlen(_zz(qpos[i, a]))
                e_vel += _vlen(_zz(qvel[i, a]))
        elif fate[j] == STAYS:
            if sent[k]:
                u_steps += _vlen(_zz(ids[i] - prev))
                prev = ids[i]
                if predicted:
                    u_changed += 1  # a mask below 64
                    u_res += p_bytes[k] + v_bytes[k]
                else:
                    u_pos += p_bytes[k]
                    u_vel += v_bytes[k]
            k += 1
    enter_len = 0
    if n_enter:
        enter_len = (_field_len(e_ids) + _field_len(e_kinds) + 2 * _field_len(8 * n_enter)
                     + _field_len(e_pos) + _field_len(e_vel))
    update_len = 0
    if n_send:
        update_len = _field_len(u_steps)
        if predicted:
            update_len += _field_len(u_changed) + _field_len(u_res)
        else:
            update_len += _field_len(u_pos) + _field_len(u_vel)
    leave_len = 0
    for q in range(n_leave):
        leave_len += _vlen(np.uint64(leaves[q]))

    total = 0
    if head[0] != 0:
        total += 1 + _vlen(np.uint64(head[0]))
    if head[1] != 0:
        total += 1 + _vlen(np.uint64(head[1]))
    if head[2] != 0:
        total += 9
    if snapshot:
        total += 2
    if n_enter:
        total += _field_len(enter_len)
    if n_send:
        total += _field_len(update_len)
    if n_leave:
        total += _field_len(leave_len)
    if snapshot:
        if head[4] != 0:
            total += 9
        if head[5] != 0:
            total += 9
    if head[6] != 0:
        total += 1 + _vlen(np.uint64(head[6]))
    if snapshot and head[7] != 0:
        total += 1 + _vlen(np.uint64(head[7]))

    buf = np.empty(total + 1, np.uint8)
    pos = 0
    if head[0] != 0:
        buf[pos] = 0x08
        pos = _put(buf, pos + 1, np.uint64(head[0]))
    if head[1] != 0:
        buf[pos] = 0x10
        pos = _put(buf, pos + 1, np.uint64(head[1]))
    if head[2] != 0:
        buf[pos] = 0x19
        pos = _put_fixed64(buf, pos + 1, head[2])
    if snapshot:
        buf[pos] = 0x20
        buf[pos + 1] = 1
        pos += 2
    if n_enter:
        pos = _put_len(buf, pos, 0x2A, enter_len)
        pos = _put_len(buf, pos, 0x0A, e_ids)
        for j in range(m):
            if fate[j] == ENTERS:
                pos = _put(buf, pos, np.uint64(ids[sel[j]]))
        pos = _put_len(buf, pos, 0x12, e_kinds)
        for j in range(m):
            if fate[j] == ENTERS:
                pos = _put(buf, pos, np.uint64(kinds[sel[j]]))
        pos = _put_len(buf, pos, 0x1A, 8 * n_enter)
        for j in range(m):
            if fate[j] == ENTERS:
                pos = _put_fixed64(buf, pos, mass_bits[sel[j]])
        pos = _put_len(buf, pos, 0x22, 8 * n_enter)
        for j in range(m):
            if fate[j] == ENTERS:
                pos = _put_fixed64(buf, pos, radius_bits[sel[j]])
        pos = _put_len(buf, pos, 0x2A, e_pos)
        for j in range(m):
            if fate[j] == ENTERS:
                for a in range(3):
                    pos = _put(buf, pos, _zz(qpos[sel[j], a]))
        pos = _put_len(buf, pos, 0x32, e_vel)
        for j in range(m):
            if fate[j] == ENTERS:
                for a in range(3):
                    pos = _put(buf, pos, _zz(qvel[sel[j], a]))
    if n_send:
        pos = _put_len(buf, pos, 0x32, update_len)
        pos = _put_len(buf, pos, 0x0A, u_steps)
        k = 0
        prev = 0
        for j in range(m):
            if fate[j] == STAYS:
                if sent[k]:
                    pos = _put(buf, pos, _zz(ids[sel[j]] - prev))
                    prev = ids[sel[j]]
                k += 1
        if predicted:
            pos = _put_len(buf, pos, 0x22, u_changed)
            for k in range(n_stay):
                if sent[k]:
                    mask = 0
                    for a in range(3):
                        mask |= int(dq[k, a] != 0) << a
                        mask |= int(dv[k, a] != 0) << (3 + a)
                    buf[pos] = np.uint8(mask)
                    pos += 1
            pos = _put_len(buf, pos, 0x2A, u_res)
            for k in range(n_stay):
                if sent[k]:
                    # A zero is written and taken back (the buffer has a spare byte):
                    # cheaper than a branch on the data.
                    for a in range(3):
                        pos = _put(buf, pos, _zz(dq[k, a])) - int(dq[k, a] == 0)
                    for a in range(3):
                        pos = _put(buf, pos, _zz(dv[k, a])) - int(dv[k, a] == 0)
        else:
            pos = _put_len(buf, pos, 0x12, u_pos)
            for k in range(n_stay):
                if sent[k]:
                    for a in range(3):
                        pos = _put(buf, pos, _zz(dq[k, a]))
            pos = _put_len(buf, pos, 0x1A, u_vel)
            for k in range(n_stay):
                if sent[k]:
                    for a in range(3):
                        pos = _put(buf, pos, _zz(dv[k, a]))
    if n_leave:
        pos = _put_len(buf, pos, 0x3A, leave_len)
        for q in range(n_leave):
            pos = _put(buf, pos, np.uint64(leaves[q]))
    if snapshot:
        if head[4] != 0:
            buf[pos] = 0x41
            pos = _put_fixed64(buf, pos + 1, head[4])
        if head[5] != 0:
            buf[pos] = 0x49
            pos = _put_fixed64(buf, pos + 1, head[5])
    if head[6] != 0:
        buf[pos] = 0x50
        pos = _put(buf, pos + 1, np.uint64(head[6]))
    if snapshot and head[7] != 0:
        buf[pos] = 0x58
        pos = _put(buf, pos + 1, np.uint64(head[7]))

    # The new baseline: every body in view, in id order; updated ones at their
    # new values and priority zero.
    n_new = m
    n_ids = np.empty(n_new, np.int64)
    n_qpos = np.empty((n_new, 3), np.int64)
    n_qvel = np.empty((n_new, 3), np.int64)
    n_sent = np.empty(n_new)
    n_rev = np.empty(n_new, np.int64)
    n_prio = np.empty(n_new)
    k = 0
    for j in range(m):
        i = sel[j]
        n_ids[j] = ids[i]
        n_rev[j] = revisions[i]
        fresh = True
        if fate[j] == STAYS:
            fresh = sent[k]
            n_prio[j] = 0.0 if fresh else priority[k]
            k += 1
        else:
            n_prio[j] = 0.0
        if fresh:
            for a in range(3):
                n_qpos[j, a] = qpos[i, a]
                n_qvel[j, a] = qvel[i, a]
            n_sent[j] = sim_time
        else:
            b = slot[j]
            for a in range(3):
                n_qpos[j, a] = b_qpos[b, a]
                n_qvel[j, a] = b_qvel[b, a]
            n_sent[j] = b_sent[b]
    return buf[:total], n_cand - n_send, n_ids, n_qpos, n_qvel, n_sent, n_rev, n_prio


@njit(boundscheck=False, cache=True)
def _search(sorted_x, value, right):
    """``np.searchsorted(sorted_x, value, side="right" if right else "left")``, NaN last."""
    lo, hi = 0, sorted_x.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if (not _before(value, sorted_x[mid])) if right else _before(sorted_x[mid], value):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(boundscheck=False, cache=True)
def _bits(x):  # a double's bits
    a = np.empty(1)
    a[0] = x
    return a.view(np.int64)[0]


@njit(boundscheck=False, cache=True)
def frame(ids, kinds, masses, radii, qpos, qvel, revisions, x_order, x_sorted, x_positions,
          geom, is_box, x_low, x_high, b_ids, b_qpos, b_qvel, b_sent, b_rev, b_prio,
          log2_table, log2_steps, predicted, sim_time, ratio, size, tokens, overhead,
          tick, base_tick, snapshot, position_step, velocity_step, produced_ms, encoding):
    """One client's frame: :func:`membership` over the view's slab, then :func:`encode`.

    The weights need ``log2(1 + steps)`` as numpy computes it: from ``log2_table`` (numpy's
    values for small steps), else from ``log2_steps`` when given (one per stayer). When
    neither has them, returns False and the steps, for numpy to take their log2 and the
    caller to ask again; else True, the steps, and what :func:`encode` returns."""
    lo = _search(x_sorted, x_low, False)
    hi = _search(x_sorted, x_high, True)
    sel, fate, slot, dist, leaves, dq, dv, moved, steps = membership(
        ids, qpos, qvel, revisions, x_order[lo:hi], x_positions[lo:hi], geom, is_box, b_ids,
        b_qpos, b_qvel, b_sent, b_rev, predicted, sim_time, ratio)
    n_stay = steps.shape[0]
    if log2_steps.shape[0] != n_stay:
        log2_steps = np.empty(n_stay)
        for k in range(n_stay):
            s = steps[k]
            if s < 0 or s >= log2_table.shape[0]:
                return (False, steps, np.empty(0, np.uint8), 0, np.empty(0, np.int64),
                        np.empty((0, 3), np.int64), np.empty((0, 3), np.int64), np.empty(0),
                        np.empty(0, np.int64), np.empty(0))
            log2_steps[k] = log2_table[s]
    head = np.empty(8, np.int64)
    head[0] = tick
    head[1] = base_tick
    head[2] = _bits(sim_time)
    head[3] = 1 if snapshot else 0
    head[4] = _bits(position_step)
    head[5] = _bits(velocity_step)
    head[6] = produced_ms
    head[7] = encoding
    buf, deferred, n_ids, n_qpos, n_qvel, n_sent, n_rev, n_prio = encode(
        ids, kinds, masses.view(np.int64), radii.view(np.int64), qpos, qvel, revisions, sel,
        fate, slot, dist, leaves, dq, dv, moved, log2_steps, b_qpos, b_qvel, b_sent, b_prio,
        size, tokens, overhead, predicted, sim_time, head)
    return True, steps, buf, deferred, n_ids, n_qpos, n_qvel, n_sent, n_rev, n_prio


def square_bound(radius: float) -> float:
    """The largest ``d2`` with ``np.sqrt(d2) <= radius``: ``sqrt`` is correctly rounded,
    so monotonic, and ``d2 <= square_bound(r)`` is exactly ``sqrt(d2) <= r``, the test
    the numpy code made, without a square root per body scanned (NaN fails both)."""
    r = np.float64(radius)
    if not r >= 0:
        return -1.0  # no distance is within a negative radius
    with np.errstate(over="ignore"):  # a square past the largest double is inf
        c = r * r
        while not np.sqrt(c) <= r:
            c = np.nextafter(c, 0.0)
        while True:
            up = np.nextafter(c, np.inf)
            if not (np.isfinite(up) and np.sqrt(up) <= r):
                return float(c)
            c = up


def log2_table(n: int = 4096) -> Floats:
    """``np.log2(1.0 + s)`` for s below ``n``, as numpy gives it for an array of steps; or
    empty where numpy's values here depend on where in an array a value sits (its SIMD
    loops and their tails), so a table could not stand in for it."""
    steps = np.arange(n, dtype=np.int64)
    table = np.log2(1.0 + steps)
    rng = np.random.default_rng(0)
    for take in (steps[::-1], rng.permutation(steps), *(steps[o:o + k] for o in (0, 1, 5, 77)
                                                        for k in (1, 2, 3, 7, 8, 9, 17, 250))):
        if not np.array_equal(np.log2(1.0 + take.copy()), table[take]):
            return np.empty(0)
    return table
