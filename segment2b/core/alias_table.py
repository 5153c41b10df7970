"""Router alias tables (``s5-router.md`` §5), built and decoded for many tables at once.

This is the in-memory float law S5 and S6 sample with: FIFO worklists over binary64 scaled
masses ``s_i = (w_i / T) * n``. It is *not* S2's blob law (index-ordered min-heaps over a
quantised grid, ``s2-alias-tables.md`` §4.2); the router never decodes the blob ("Option A").

Tables are stored in CSR form: ``offsets[t] .. offsets[t+1]`` is table ``t``'s slice of the flat
``weights``/``prob``/``alias`` arrays and ``alias`` holds table-local indices. The build and the
decode are compiled (numba) passes, one over every table and one over every uniform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

__all__ = ["AliasBuildError", "AliasTables", "build_alias", "build_alias_tables", "warm_up"]


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
        t = _kernel_array(table, np.int64)
        uu = _kernel_array(u, np.float64)
        out = np.empty(uu.size, dtype=np.int64)
        if _decode(t, uu, self.offsets, self.prob, self.alias, out) >= 0:
            msg = "alias decode index outside its table (uniform not in (0, 1))"
            raise ValueError(msg)
        return out


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


def _kernel_array(values: Any, dtype: type[np.generic]) -> np.ndarray:
    """``values`` as the one array type the kernels are compiled for: C-contiguous and
    writable. numba compiles (or loads from its cache) one machine-code variant per argument
    type, and a read-only array (``Series.to_numpy()``, ``np.frombuffer``) is another type:
    without this its first call would compile inside a run rather than in ``warm_up``."""
    return np.require(values, dtype=dtype, requirements=("C", "W"))


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _decode(  # noqa: PLR0917
    table: np.ndarray,
    u: np.ndarray,
    offs: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    out: np.ndarray,
) -> int:
    """:meth:`AliasTables.decode` element by element into ``out``; returns the first element
    whose ``floor(u * n)`` is outside ``[0, n)`` (NaN included), or -1."""
    for i in range(u.size):
        o = offs[table[i]]
        n = offs[table[i] + 1] - o
        x = u[i] * np.float64(n)
        jf = np.floor(x)
        if not (jf >= 0.0 and jf < n):
            return i
        j = np.int64(jf)
        out[i] = j if x - jf < prob[o + j] else alias[o + j]
    return -1


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _build(  # noqa: PLR0917 - one compiled pass over every table
    w: np.ndarray,
    offs: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    totals: np.ndarray,
    s: np.ndarray,
    fifo: np.ndarray,
) -> int:
    """The serial law of :func:`build_alias_tables`, table by table, into ``prob`` / ``alias``
    / ``totals``; returns the first table whose total is not finite and > 0, or -1. ``s`` and
    ``fifo`` are scratch (``len(w)`` and ``3 * max n``)."""
    for t in range(offs.size - 1):
        o = offs[t]
        n = offs[t + 1] - o
        tot = 0.0
        for i in range(n):  # left to right in binary64
            tot += w[o + i]
        totals[t] = tot
        if not (np.isfinite(tot) and tot > 0.0):
            return t
        # small FIFO in fifo[0:n] (each index enters it at most once); large FIFO after it
        # (its n seeds plus at most n re-insertions).
        sh = st = 0
        lh = lt = n
        for i in range(n):
            s[o + i] = (w[o + i] / tot) * n
            prob[o + i] = 1.0
            alias[o + i] = i
            if s[o + i] < 1.0:
                fifo[st] = i
                st += 1
        for i in range(n):
            if not s[o + i] < 1.0:
                fifo[lt] = i
                lt += 1
        while sh < st and lh < lt:
            a = fifo[sh]
            b = fifo[lh]
            sh += 1
            lh += 1
            p_a = s[o + a]
            prob[o + a] = p_a
            alias[o + a] = b
            s_b = s[o + b] - (1.0 - p_a)
            s[o + b] = s_b
            if s_b < 1.0:
                fifo[st] = b
                st += 1
            else:
                fifo[lt] = b
                lt += 1
    return -1


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

    Compiled (numba, one pass over every table): each table runs exactly its serial
    sequence of binary64 operations (no fast-math), so results equal a per-table Python loop
    bit for bit, in O(sum of n) time and memory.

    Compatibility guarantee
    -----------------------
    Bit-exact with the serial law and the §5 KATs: ``[0.5, 0.3, 0.2]`` -> prob
    ``[1.0, 0.8999999999999999, 0.6000000000000001]``, alias ``[0, 0, 0]``; ``[0.1, 0.3]`` ->
    prob ``[0.5, 1.0]``, alias ``[1, 1]``.
    """
    w_all = _kernel_array(weights, np.float64)
    offs = _kernel_array(offsets, np.int64)
    if offs.ndim != 1 or offs.size < 1 or offs[0] != 0 or offs[-1] != w_all.size:
        msg = "offsets must start at 0 and end at len(weights)"
        raise ValueError(msg)
    sizes = np.diff(offs)
    n_tables = sizes.size
    prob = np.empty(w_all.size, dtype=np.float64)
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

    fifo = np.empty(3 * int(sizes.max()), dtype=np.int64)
    bad = _build(w_all, offs, prob, alias, totals, np.empty(w_all.size, dtype=np.float64), fifo)
    if bad >= 0:
        raise AliasBuildError(bad, f"total weight {totals[bad]!r} is not finite and > 0")
    return AliasTables(offs, prob, alias, totals)


def warm_up() -> None:
    """Compile the kernels now (or load them from numba's cache); see ``storage.compiled``."""
    tables = build_alias_tables(np.array([1.0]), np.array([0, 1], dtype=np.int64))
    tables.decode(np.zeros(1, dtype=np.int64), np.array([0.5]))
