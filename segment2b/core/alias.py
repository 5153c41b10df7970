"""Alias-table primitives of 2B: integer grids, Walker/Vose build, Q0.32 slices and decoding.

Everything here is pure numpy (plus ``hashlib`` for slice checksums): no Dagster, no I/O, no
clock. Arrays hold many *segments* (one per merchant) back to back; ``offsets`` (length M + 1,
strictly increasing, ``offsets[0] == 0``) delimits them, so one call serves a whole world.

Byte contract: :func:`grid_masses` (S2 law), :func:`walker_vose`, :func:`encode_prob_q` and
:func:`assemble_blob` define the bytes of ``alias.bin`` (``s2-alias-tables.md`` §4); the decode
law (§7) is :func:`parse_slice` + :func:`decode_probabilities` and is shared by every reader
(S2's parity check, S5, S7). None of the arithmetic may be "simplified" without re-running the
worked example of §6 and the golden hashes.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "HEADER_BYTES",
    "PAIR_BYTES",
    "AliasSlice",
    "AliasSliceError",
    "BlobLayout",
    "GridMasses",
    "alias_pick",
    "assemble_blob",
    "decode_probabilities",
    "decode_probabilities_segments",
    "encode_prob_q",
    "encode_slice",
    "grid_masses",
    "parse_slice",
    "segment_first_argmax",
    "segment_ids",
    "segment_max",
    "segment_offsets",
    "segment_positions",
    "segment_sum",
    "slice_length",
    "walker_vose",
]

HEADER_BYTES = 16
"""Slice header: ``n_sites``, ``prob_qbits``, ``reserved0``, ``reserved1`` (four u32)."""

PAIR_BYTES = 8
"""One interleaved ``(prob_q, alias)`` pair of u32 (README decision 2)."""

Endianness = Literal["little", "big"]
Residual = Literal["signed", "floor_fraction"]


# --- segments --------------------------------------------------------------------------------


def segment_offsets(keys: npt.ArrayLike) -> np.ndarray:
    """Offsets (length M + 1) of the runs of equal consecutive ``keys``.

    ``keys`` must already be grouped (e.g. sorted by merchant); an empty input gives ``[0]``.
    """
    arr = np.asarray(keys)
    if arr.size == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    return np.concatenate(([0], change, [arr.size])).astype(np.int64)


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """Segment number of every element (``0..M-1``)."""
    return np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))


def segment_positions(offsets: np.ndarray) -> np.ndarray:
    """Index of every element within its segment (``0..K-1``)."""
    n = int(offsets[-1])
    return np.arange(n, dtype=np.int64) - np.repeat(offsets[:-1], np.diff(offsets))


def segment_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-segment ``float64.sum()``: exactly the design's per-merchant reduction.

    Notes
    -----
    numpy's ``sum`` is pairwise (8 accumulators, then recursive halving) and ``add.reduceat``
    is not the same reduction (it differs in the last ulp from K = 10 on). The specification
    pins the former, so each segment is summed with ``.sum()`` on its contiguous slice; a slice
    sums bit-identically to a fresh array of the same values. Cost: ~2 µs per segment.

    Compatibility guarantee
    -----------------------
    Bit-identical to ``np.asarray(segment, dtype=float64).sum()`` for every segment.
    """
    vals = np.ascontiguousarray(values, dtype=np.float64)
    bounds = offsets.tolist()
    return np.fromiter(
        (vals[a:b].sum() for a, b in itertools.pairwise(bounds)),
        dtype=np.float64,
        count=len(bounds) - 1,
    )


def segment_max(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-segment maximum (order-independent, so ``reduceat`` is exact); segments non-empty."""
    if offsets.size <= 1:
        return np.zeros(0, dtype=np.asarray(values).dtype)
    return np.maximum.reduceat(values, offsets[:-1])


def segment_first_argmax(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Global index of the first maximum of every segment (ties → lowest index)."""
    if offsets.size <= 1:
        return np.zeros(0, dtype=np.int64)
    seg = segment_ids(offsets)
    is_max = values == segment_max(values, offsets)[seg]
    idx = np.flatnonzero(is_max)
    # idx is ascending, so the first hit of each segment is its first maximum.
    first = np.unique(seg[idx], return_index=True)[1]
    return idx[first].astype(np.int64)


def _ranked_within_segments(
    order_key: np.ndarray, candidates: np.ndarray, seg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sort ``candidates`` (global indices) by (segment, key asc, index asc); return them and
    their rank within their segment (0-based)."""
    cand_seg = seg[candidates]
    order = np.lexsort((candidates, order_key, cand_seg))
    ranked = candidates[order]
    ranked_seg = cand_seg[order]
    starts = np.flatnonzero(np.r_[True, ranked_seg[1:] != ranked_seg[:-1]])
    sizes = np.diff(np.r_[starts, ranked.size])
    rank = np.arange(ranked.size) - np.repeat(starts, sizes)
    return ranked, rank


# --- integer grid (S2 §4.1; S1 §8) ---------------------------------------------------------


@dataclass(frozen=True)
class GridMasses:
    """Integer masses on the grid G = 2^b, one per element.

    Attributes
    ----------
    masses : numpy.ndarray
        int64 masses after the ±1 adjustment.
    delta : numpy.ndarray
        Per segment, ``G − Σ m`` after rounding and before the adjustment.
    unassigned : numpy.ndarray
        Per segment, how many of the ``|delta|`` units could not be placed because the ranked
        list ran out (> 0 means ``Σ m ≠ G``: S1 ``052``, S2 ``052``).
    """

    masses: np.ndarray
    delta: np.ndarray
    unassigned: np.ndarray


def grid_masses(
    p: np.ndarray,
    offsets: np.ndarray,
    bits: int,
    *,
    residual: Residual,
    skip_nonpositive: bool = False,
    one_hot_epsilon: float | None = None,
) -> GridMasses:
    """Reconstruct integer masses ``m`` with ``Σ m = G = 2^bits`` per segment.

    One law, two parameterisations (the specification fixes both):

    * **S2 blob law** (``s2-alias-tables.md`` §4.1): ``residual="signed"``,
      ``skip_nonpositive=False`` and ``one_hot_epsilon=ε`` when the policy's
      ``treat_within_epsilon_of_one_as_one`` is set.
    * **S1 coherence check** (``s1-site-weights.md`` §8): ``residual="floor_fraction"``,
      ``skip_nonpositive=True``, no one-hot shortcut.

    Steps: ``x = p·G``; ``m = rint(x)`` (ties to even); ``Δ = G − Σm``; Δ > 0 adds +1 to the
    first Δ indices ranked by (key desc, index asc), Δ < 0 subtracts 1 from the first |Δ|
    ranked by (key asc, index asc), where key = ``x − m`` (signed) or ``x − floor(x)``
    (floor_fraction). ``skip_nonpositive`` leaves indices with ``m ≤ 0`` out of a Δ < 0 walk.
    With ``one_hot_epsilon``, a segment whose max p ≥ 1 − ε gets ``m = G`` at its first
    maximum and 0 elsewhere.

    Parameters
    ----------
    p : numpy.ndarray
        float64 weights, segments back to back.
    offsets : numpy.ndarray
        Segment offsets (length M + 1); every segment non-empty.
    bits : int
        Grid exponent b.

    Returns
    -------
    GridMasses
        Callers check ``unassigned`` and the range ``0 ≤ m ≤ G`` and raise their own code.

    Compatibility guarantee
    -----------------------
    The S2 parameterisation defines ``alias.bin`` bytes; it must stay bit-exact.
    """
    p = np.ascontiguousarray(p, dtype=np.float64)
    grid = 1 << bits
    n_seg = offsets.size - 1
    if n_seg == 0:
        empty = np.zeros(0, dtype=np.int64)
        return GridMasses(empty, empty, empty)
    x = p * float(grid)
    m_float = np.rint(x)
    seg = segment_ids(offsets)
    if one_hot_epsilon is not None:
        hot = segment_max(p, offsets) >= 1.0 - one_hot_epsilon
        if hot.any():
            m_float[hot[seg]] = 0.0
            m_float[segment_first_argmax(p, offsets)[hot]] = float(grid)
    masses = m_float.astype(np.int64)
    delta = grid - np.add.reduceat(masses, offsets[:-1])
    unassigned = np.zeros(n_seg, dtype=np.int64)
    if not delta.any():
        return GridMasses(masses, delta, unassigned)
    key = x - m_float if residual == "signed" else x - np.floor(x)
    sign = np.sign(delta)[seg]
    candidates = sign != 0
    if skip_nonpositive:
        candidates &= (sign > 0) | (masses > 0)
    cand = np.flatnonzero(candidates)
    # Δ > 0 ranks by key descending: sort on −key (negation is exact).
    order_key = np.where(sign[cand] > 0, -key[cand], key[cand])
    ranked, rank = _ranked_within_segments(order_key, cand, seg)
    need = np.abs(delta)
    take = ranked[rank < need[seg[ranked]]]
    masses[take] += sign[take]
    available = np.bincount(seg[cand], minlength=n_seg)
    unassigned = np.maximum(need - available, 0)
    return GridMasses(masses, delta, unassigned)


# --- Walker/Vose (S2 §4.2) -----------------------------------------------------------------


def walker_vose(
    masses: np.ndarray, offsets: np.ndarray, bits: int, *, tiny_negative_epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Alias tables of every segment with index-ordered min-heap worklists.

    ``s_i = (m_i / G) · K`` (divide first); θ = 1 − τ; small = {i: s_i < θ}, large = the rest.
    While both are non-empty: pop the smallest index ``s`` of small and ``l`` of large,
    ``prob[s] = s_s``, ``alias[s] = l``, ``s_l −= 1 − prob[s]``, push ``l`` back by its new
    value. Leftovers get ``prob = 1``, ``alias = self``. K = 1 gives ``([1.0], [0])``.

    Returns
    -------
    prob, alias : numpy.ndarray
        float64 acceptance probabilities and int64 within-segment alias indices.

    Notes
    -----
    The worklist is inherently sequential per segment, so this is a Python loop over
    segments with ``heapq`` on Python floats (IEEE binary64, as numpy). Index-ordered heaps,
    not FIFO queues, are the design's meaning of ``ascending_index`` (§11): a re-inserted ``l``
    competes by index.

    Compatibility guarantee
    -----------------------
    Defines ``alias.bin`` bytes together with :func:`encode_prob_q`.
    """
    n = int(offsets[-1])
    sizes = np.diff(offsets)
    k_elem = np.repeat(sizes, sizes).astype(np.float64)
    scaled = (np.asarray(masses, dtype=np.float64) / float(1 << bits)) * k_elem
    prob = np.ones(n, dtype=np.float64)
    alias = segment_positions(offsets)  # leftovers alias to themselves
    theta = 1.0 - tiny_negative_epsilon
    s_all = scaled.tolist()
    prob_out = prob.tolist()
    alias_out = alias.tolist()
    bounds = offsets.tolist()
    for start, end in itertools.pairwise(bounds):
        k = end - start
        if k == 1:
            continue
        s = s_all[start:end]
        # Comprehensions in index order are already valid min-heaps.
        small = [i for i in range(k) if s[i] < theta]
        large = [i for i in range(k) if s[i] >= theta]
        while small and large:
            i = heapq.heappop(small)
            big = heapq.heappop(large)
            prob_out[start + i] = s[i]
            alias_out[start + i] = big
            s[big] = s[big] - (1.0 - s[i])
            heapq.heappush(small if s[big] < theta else large, big)
    return np.asarray(prob_out, dtype=np.float64), np.asarray(alias_out, dtype=np.int64)


# --- Q0.32 encoding and slices (S2 §4.3-4.5) -----------------------------------------------


def encode_prob_q(prob: np.ndarray, prob_qbits: int) -> np.ndarray:
    """``q = floor(prob · 2^Q)`` in float64, clamped to ``[1, 2^Q − 1]``, as uint32.

    So 1.0 → ``2^Q − 1`` (``0xFFFFFFFF`` at Q = 32) and 0 → 1.
    """
    qs = float(1 << prob_qbits)
    q = np.clip(np.floor(np.asarray(prob, dtype=np.float64) * qs), 1.0, qs - 1.0)
    return q.astype(np.uint64).astype(np.uint32)


def slice_length(sites: int | np.ndarray) -> int | np.ndarray:
    """Payload length ``16 + 8K`` of a slice with K sites (padding excluded)."""
    return HEADER_BYTES + PAIR_BYTES * sites


def _u32(endianness: Endianness) -> np.dtype:
    return np.dtype("<u4" if endianness == "little" else ">u4")


def _slice_words(
    prob_q: np.ndarray, alias: np.ndarray, offsets: np.ndarray, prob_qbits: int
) -> np.ndarray:
    """All slices as one uint32 word array: header then interleaved (prob_q, alias) pairs."""
    sizes = np.diff(offsets)
    n_seg = sizes.size
    n = int(offsets[-1])
    words = np.zeros(4 * n_seg + 2 * n, dtype=np.uint32)
    # Slice m starts at word 4m + 2·offsets[m]; element i of the blob then sits at 4(m+1) + 2i.
    head = 4 * np.arange(n_seg, dtype=np.int64) + 2 * offsets[:-1]
    words[head] = sizes.astype(np.uint32)
    words[head + 1] = np.uint32(prob_qbits)
    elem = 4 * (segment_ids(offsets) + 1) + 2 * np.arange(n, dtype=np.int64)
    words[elem] = prob_q
    words[elem + 1] = np.asarray(alias).astype(np.uint32)
    return words


def encode_slice(
    prob_q: np.ndarray, alias: np.ndarray, *, prob_qbits: int, endianness: Endianness
) -> bytes:
    """Serialise one merchant's slice (layout ``2B.alias.blob.v1``, no padding)."""
    offsets = np.array([0, len(prob_q)], dtype=np.int64)
    words = _slice_words(np.asarray(prob_q), np.asarray(alias), offsets, prob_qbits)
    return words.astype(_u32(endianness)).tobytes()


@dataclass(frozen=True)
class BlobLayout:
    """The assembled blob and, per segment, where its slice lives and how to verify it.

    ``lengths`` are the index ``length`` values (payload only unless the padding rule includes
    the pad); ``checksums`` are lowercase hex SHA-256 of exactly the payload bytes.
    """

    blob: bytes
    offsets: np.ndarray
    lengths: np.ndarray
    payload_lengths: np.ndarray
    checksums: tuple[str, ...]
    sha256: str


def assemble_blob(
    prob_q: np.ndarray,
    alias: np.ndarray,
    offsets: np.ndarray,
    *,
    prob_qbits: int,
    endianness: Endianness,
    alignment_bytes: int,
    pad_byte: int = 0,
    pad_included_in_slice_length: bool = False,
) -> BlobLayout:
    """Pack every segment's slice in order, each followed by its alignment padding.

    pad = (A − (offset + L) mod A) mod A after every slice, the last one included, so the blob
    size is a multiple of A. Because each offset is itself a multiple of A, this equals
    (A − L mod A) mod A, so offsets are the same under either padding rule; only the index
    ``length`` differs (L, or L + pad when the pad is included).

    Compatibility guarantee
    -----------------------
    Defines ``alias.bin`` bytes (``s2-alias-tables.md`` §4.4-4.5, worked example §6).
    """
    sizes = np.diff(offsets).astype(np.int64)
    payload_len = HEADER_BYTES + PAIR_BYTES * sizes
    pad = (alignment_bytes - payload_len % alignment_bytes) % alignment_bytes
    stride = payload_len + pad
    slice_off = np.concatenate(([0], np.cumsum(stride)[:-1])).astype(np.int64)
    total = int(stride.sum())
    payload = _slice_words(prob_q, alias, offsets, prob_qbits).astype(_u32(endianness)).tobytes()
    payload_off = np.concatenate(([0], np.cumsum(payload_len)[:-1])).astype(np.int64)
    if pad.any():
        buf = np.full(total, pad_byte, dtype=np.uint8)
        dest = np.repeat(slice_off - payload_off, payload_len) + np.arange(
            len(payload), dtype=np.int64
        )
        buf[dest] = np.frombuffer(payload, dtype=np.uint8)
        blob = buf.tobytes()
    else:
        blob = payload
    view = memoryview(payload)
    checksums = tuple(
        hashlib.sha256(view[a : a + n]).hexdigest()
        for a, n in zip(payload_off.tolist(), payload_len.tolist(), strict=True)
    )
    lengths = stride if pad_included_in_slice_length else payload_len
    return BlobLayout(
        blob=blob,
        offsets=slice_off,
        lengths=lengths.astype(np.int64),
        payload_lengths=payload_len,
        checksums=checksums,
        sha256=hashlib.sha256(blob).hexdigest(),
    )


# --- decode law (S2 §4.6, §7) -------------------------------------------------------------


class AliasSliceError(ValueError):
    """A slice that does not parse under layout ``2B.alias.blob.v1`` (S2 ``063``)."""


@dataclass(frozen=True)
class AliasSlice:
    """One parsed slice: K sites, Q bits, and the interleaved pairs split into two arrays."""

    n_sites: int
    prob_qbits: int
    prob_q: np.ndarray
    alias: np.ndarray

    def probabilities(self) -> np.ndarray:
        """p̂ per site in slice order (:func:`decode_probabilities`)."""
        return decode_probabilities(self.prob_q, self.alias, self.prob_qbits)


def parse_slice(data: bytes | memoryview, *, endianness: Endianness) -> AliasSlice:
    """Parse one slice payload (decode law §7 step 3); raise :class:`AliasSliceError`.

    Checks: at least a header; ``len == 16 + 8K`` exactly (callers pass the payload, not the
    pad); 1 ≤ Q ≤ 32; reserved words zero; every alias < K. Callers compare K with the index
    ``sites`` and Q with the policy's ``prob_qbits``.
    """
    buf = memoryview(data).cast("B")
    if len(buf) < HEADER_BYTES:
        raise AliasSliceError(f"slice has {len(buf)} bytes, shorter than its 16-byte header")
    u32 = _u32(endianness)
    head = np.frombuffer(buf[:HEADER_BYTES], dtype=u32)
    k, q_bits, res0, res1 = (int(v) for v in head)
    if len(buf) != slice_length(k):
        raise AliasSliceError(f"slice of {len(buf)} bytes does not hold n_sites={k} pairs")
    if k < 1:
        raise AliasSliceError("slice has n_sites = 0")
    if not 1 <= q_bits <= 32:
        raise AliasSliceError(f"prob_qbits={q_bits} outside [1, 32]")
    if res0 or res1:
        raise AliasSliceError(f"reserved header words are not zero ({res0}, {res1})")
    pairs = np.frombuffer(buf[HEADER_BYTES:], dtype=u32).reshape(k, 2)
    prob_q = pairs[:, 0].astype(np.uint32)
    alias = pairs[:, 1].astype(np.uint32)
    if int(alias.max()) >= k:
        raise AliasSliceError(f"alias index {int(alias.max())} out of range for K={k}")
    return AliasSlice(k, q_bits, prob_q, alias)


def decode_probabilities_segments(
    prob_q: np.ndarray, alias: np.ndarray, offsets: np.ndarray, prob_qbits: int
) -> np.ndarray:
    """p̂ of every segment: ``d = q/2^Q``; ``p̂_j = d_j/K``; then for j in order
    ``p̂[alias_j] += (1 − d_j)/K`` (``np.add.at`` applies repeated indices in order).

    This is the §4.6 coherence decode and equals §7's ``q_j/(K·2^Q) + Σ_{a_i=j}(1 − q_i/2^Q)/K``
    (``q/2^Q`` is exact, so both orders round once).
    """
    sizes = np.diff(offsets)
    k = np.repeat(sizes, sizes).astype(np.float64)
    d = np.asarray(prob_q, dtype=np.float64) / float(1 << prob_qbits)
    p_hat = d / k
    target = np.repeat(offsets[:-1], sizes) + np.asarray(alias, dtype=np.int64)
    np.add.at(p_hat, target, (1.0 - d) / k)
    return p_hat


def decode_probabilities(prob_q: np.ndarray, alias: np.ndarray, prob_qbits: int) -> np.ndarray:
    """p̂ of one slice (decode law §7 step 4); see :func:`decode_probabilities_segments`."""
    offsets = np.array([0, len(prob_q)], dtype=np.int64)
    return decode_probabilities_segments(prob_q, alias, offsets, prob_qbits)


def alias_pick(
    prob_q: np.ndarray, alias: np.ndarray, prob_qbits: int, u: npt.ArrayLike
) -> np.ndarray:
    """Sample site indices with law ``walker_vose_q0_32`` (§7 step 5) for uniforms ``u``.

    ``j = floor(u·K)``; ``r = u·K − j``; ``r_q = floor(r·2^Q)``; return ``j`` if
    ``r_q < q_j`` else ``alias_j``. ``u`` must lie in (0, 1); ``j`` is clamped to K − 1
    against ``u·K`` rounding up to K for u within an ulp of 1.
    """
    k = len(prob_q)
    uk = np.asarray(u, dtype=np.float64) * k
    j = np.minimum(np.floor(uk), k - 1).astype(np.int64)
    r_q = np.floor((uk - j) * float(1 << prob_qbits))
    q = np.asarray(prob_q, dtype=np.float64)[j]
    return np.where(r_q < q, j, np.asarray(alias, dtype=np.int64)[j])
