"""Router alias tables (``s5-router.md`` §5), built and decoded for many tables at once.

This is the in-memory float law S5 and S6 sample with: FIFO worklists over binary64 scaled
masses ``s_i = (w_i / T) * n``. It is *not* S2's blob law (index-ordered min-heaps over a
quantised grid, ``s2-alias-tables.md`` §4.2); the router never decodes the blob ("Option A").

Tables are stored in CSR form: ``offsets[t] .. offsets[t+1]`` is table ``t``'s slice of the flat
``weights``/``prob``/``alias`` arrays and ``alias`` holds table-local indices. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AliasBuildError", "AliasTables", "build_alias", "build_alias_tables"]


class AliasBuildError(ValueError):
    """A table's weights cannot form an alias table (``T <= 0``, non-finite, or empty).

    ``table`` is the offending table index; callers map it to their spec code.
    """

    def __init__(self, table: int, reason: str) -> None:
        super().__init__(f"alias table {table}: {reason}")
        self.table = table
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AliasTables:
    """CSR alias tables.

    Attributes
    ----------
    offsets : numpy.ndarray
        int64, length ``T + 1``; table ``t`` owns flat slots ``offsets[t]:offsets[t+1]``.
    prob : numpy.ndarray
        float64 acceptance probabilities, flat.
    alias : numpy.ndarray
        int64 table-local alias indices, flat.
    totals : numpy.ndarray
        float64 ``T = sum(w)`` per table, summed left to right in binary64 (the sum S5 checks
        against 1 for group mixes and S6 for edge lists).
    """

    offsets: np.ndarray
    prob: np.ndarray
    alias: np.ndarray
    totals: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """Number of entries ``n`` of every table (int64)."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def decode(self, table: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Decode uniforms against tables; returns table-local indices (int64).

        ``x = u * n``; ``j = floor(x)``; ``r = x - j``; result ``j`` if ``r < prob[j]`` else
        ``alias[j]`` (``s5-router.md`` §5), evaluated in binary64 for every element.

        Raises
        ------
        ValueError
            If ``j`` falls outside ``[0, n)`` (only possible for ``u`` outside ``(0, 1)``).
        """
        t = np.asarray(table, dtype=np.int64)
        uu = np.asarray(u, dtype=np.float64)
        n = (self.offsets[t + 1] - self.offsets[t]).astype(np.int64)
        x = uu * n.astype(np.float64)
        jf = np.floor(x)
        r = x - jf
        j = jf.astype(np.int64)
        if j.size and (int(j.min()) < 0 or bool(np.any(j >= n))):
            msg = "alias decode index outside its table (uniform not in (0, 1))"
            raise ValueError(msg)
        flat = self.offsets[t] + j
        return np.where(r < self.prob[flat], j, self.alias[flat])


def build_alias(weights: np.ndarray | list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Alias table of one weight vector: ``(prob, alias)``; see :func:`build_alias_tables`.

    Examples
    --------
    >>> prob, alias = build_alias([0.5, 0.3, 0.2])
    >>> prob.tolist(), alias.tolist()
    ([1.0, 0.8999999999999999, 0.6000000000000001], [0, 0, 0])
    """
    w = np.asarray(weights, dtype=np.float64)
    tables = build_alias_tables(w, np.array([0, w.size], dtype=np.int64))
    return tables.prob, tables.alias


def _bucket_widths(sizes: np.ndarray) -> np.ndarray:
    """Padding width class of each table: the next power of two >= n (n >= 1)."""
    return np.left_shift(1, np.ceil(np.log2(np.maximum(sizes, 1))).astype(np.int64))


def build_alias_tables(weights: np.ndarray, offsets: np.ndarray) -> AliasTables:
    """Build every alias table of a CSR weight array (``s5-router.md`` §5), RNG-free.

    Parameters
    ----------
    weights : numpy.ndarray
        float64 weights, flat, each table's entries in its given (canonical) order.
    offsets : numpy.ndarray
        int64, length ``T + 1``, non-decreasing, ``offsets[0] == 0``, ``offsets[-1] ==
        len(weights)``; every table must have at least one entry.

    Returns
    -------
    AliasTables

    Raises
    ------
    AliasBuildError
        For the first table (lowest index) with no entries, or with ``T <= 0`` or non-finite.

    Notes
    -----
    Per table, exactly the serial law:

    1. ``T = sum(w)`` left to right in binary64; ``p_i = w_i / T``; ``s_i = p_i * n``.
    2. ``small`` = FIFO of indices with ``s_i < 1`` (ascending), ``large`` = FIFO of the rest.
    3. While both are non-empty: pop ``a`` from small and ``b`` from large;
       ``prob[a] = s_a``; ``alias[a] = b``; ``s_b = s_b - (1 - prob[a])``; push ``b`` to the back
       of small if ``s_b < 1`` else to the back of large.
    4. Everything left: ``prob = 1.0``, ``alias = self``.

    Vectorisation: tables are grouped by padded width (next power of two); within a group the
    FIFOs are rows of index matrices with head/tail pointers, and one numpy step advances every
    still-active table by one worklist pop. Each table sees exactly its serial sequence of
    binary64 operations, so results equal a per-table loop bit for bit. Cost is
    O(sum of n) memory and O(max n) numpy steps per width group.

    Compatibility guarantee
    -----------------------
    Bit-exact with the serial law and the §5 KATs: ``[0.5, 0.3, 0.2]`` -> prob
    ``[1.0, 0.8999999999999999, 0.6000000000000001]``, alias ``[0, 0, 0]``; ``[0.1, 0.3]`` ->
    prob ``[0.5, 1.0]``, alias ``[1, 1]``.
    """
    w_all = np.ascontiguousarray(weights, dtype=np.float64)
    offs = np.ascontiguousarray(offsets, dtype=np.int64)
    if offs.ndim != 1 or offs.size < 1 or offs[0] != 0 or offs[-1] != w_all.size:
        msg = "offsets must start at 0 and end at len(weights)"
        raise ValueError(msg)
    sizes = np.diff(offs)
    n_tables = sizes.size
    prob = np.ones(w_all.size, dtype=np.float64)
    alias = np.empty(w_all.size, dtype=np.int64)
    totals = np.empty(n_tables, dtype=np.float64)
    if n_tables == 0:
        return AliasTables(offs, prob, alias, totals)
    if np.any(sizes < 0):
        msg = "offsets must be non-decreasing"
        raise ValueError(msg)
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        raise AliasBuildError(int(empty[0]), "table has no entries")

    widths = _bucket_widths(sizes)
    bad_tables: list[int] = []
    for width in np.unique(widths).tolist():
        tabs = np.flatnonzero(widths == width)
        n_r = sizes[tabs]
        rows = tabs.size
        cols = np.arange(width, dtype=np.int64)
        valid = cols[None, :] < n_r[:, None]
        flat_idx = offs[tabs][:, None] + cols[None, :]
        flat_idx = np.where(valid, flat_idx, 0)
        wm = np.where(valid, w_all[flat_idx], 0.0)
        # Left-to-right binary64 sum: accumulate is sequential; trailing +0.0 pads are exact.
        tot = np.add.accumulate(wm, axis=1)[:, -1] if width > 1 else wm[:, 0].copy()
        totals[tabs] = tot
        bad = ~np.isfinite(tot) | (tot <= 0.0)
        if bad.any():
            bad_tables.append(int(tabs[np.flatnonzero(bad)[0]]))
            continue
        s = (wm / tot[:, None]) * n_r[:, None].astype(np.float64)
        # Worklist seeds: small (s < 1) ascending, then large ascending, then padding.
        key = np.where(valid, (s >= 1.0).astype(np.int8), np.int8(2))
        order = np.argsort(key, axis=1, kind="stable")
        n_small = np.sum(valid & (s < 1.0), axis=1)
        small_q = order.copy()
        large_q = np.zeros((rows, 2 * width), dtype=np.int64)
        large_q[:, :width] = order
        sh = np.zeros(rows, dtype=np.int64)
        st = n_small.astype(np.int64)
        lh = st.copy()
        lt = n_r.astype(np.int64)
        pm = np.ones((rows, width), dtype=np.float64)
        am = np.broadcast_to(cols, (rows, width)).copy()
        act = np.flatnonzero((sh < st) & (lh < lt))
        while act.size:
            a = small_q[act, sh[act]]
            b = large_q[act, lh[act]]
            p_a = s[act, a]
            pm[act, a] = p_a
            am[act, a] = b
            s_b = s[act, b] - (1.0 - p_a)
            s[act, b] = s_b
            sh[act] += 1
            lh[act] += 1
            to_small = s_b < 1.0
            r_small = act[to_small]
            small_q[r_small, st[r_small]] = b[to_small]
            st[r_small] += 1
            r_large = act[~to_small]
            large_q[r_large, lt[r_large]] = b[~to_small]
            lt[r_large] += 1
            act = act[(sh[act] < st[act]) & (lh[act] < lt[act])]
        prob[flat_idx[valid]] = pm[valid]
        alias[flat_idx[valid]] = am[valid]
    if bad_tables:
        first = min(bad_tables)
        raise AliasBuildError(first, f"total weight {totals[first]!r} is not finite and > 0")
    return AliasTables(offs, prob, alias, totals)
