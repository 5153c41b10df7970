"""Philox2x64-10 counter-based bit source, key/counter derivation and the S3 uniform map.

Everything here is pure numpy (plus ``hashlib`` for the run-constant derivation): no Dagster,
no I/O, no clock. The integer outputs are part of the product's byte contract (spec README
decision 4): they must be bit-exact with the Random123 vectors and with ``s3-day-effects.md``
§6.5, so none of the arithmetic below may be "simplified" without re-running those vectors.
"""

from __future__ import annotations

import hashlib
import operator
import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "OUT0_UNIFORM_ONE_MIN",
    "PHILOX_M2X64",
    "PHILOX_W64",
    "PhiloxStream",
    "counters_from_base",
    "derive_key_counter",
    "mulhilo64",
    "philox2x64_10",
    "uer",
    "uniform_one_indices",
    "uniform_open01",
]

PHILOX_M2X64 = 0xD2B74407B1CE6E93
"""Philox2x64 round multiplier (Random123 ``PHILOX_M2x64_0``)."""

PHILOX_W64 = 0x9E3779B97F4A7C15
"""Weyl key increment (Random123 ``PHILOX_W64_0``, the golden ratio in 64 bits)."""

OUT0_UNIFORM_ONE_MIN = 2**64 - 1024
"""Smallest ``out0`` whose S3 uniform ``(double(out0) + 0.5) * 2**-64`` rounds to exactly 1.0."""

_ROUNDS = 10
_U64_MAX = 2**64 - 1
_U128_MAX = 2**128 - 1
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
# 2**-64 is a power of two, so scaling by it is exact; only the +0.5 can round.
_TWO_POW_M64 = 2.0**-64
# Chunk length for the round loop: 8 uint64 work buffers of this length (~1 MiB) stay in the
# L2 cache, which is worth ~2x over streaming whole 1e6-element arrays through memory.
_CHUNK = 16_384
_MF_HEX = re.compile(r"[0-9a-f]{64}")


def _split32(m: int) -> tuple[np.uint64, np.uint64]:
    """Split a 64-bit constant into (low, high) 32-bit limbs as numpy scalars."""
    return np.uint64(m & 0xFFFFFFFF), np.uint64(m >> 32)


def _as_u64(x: np.ndarray | int, name: str) -> np.ndarray:
    """Return ``x`` as a uint64 array, refusing values that would silently wrap.

    ``astype(np.uint64)`` on a negative int64 wraps modulo 2**64; a wrapped counter or key would
    address a different draw without any error, so the range is checked first.
    """
    arr = np.asarray(x)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype.kind == "u":
        return arr.astype(np.uint64)
    if arr.dtype.kind == "i":
        if arr.size and int(arr.min()) < 0:
            msg = f"{name} must be non-negative, got a minimum of {int(arr.min())}"
            raise ValueError(msg)
        return arr.astype(np.uint64)
    if arr.dtype == object:
        values = [operator.index(v) for v in arr.ravel().tolist()]
        if any(v < 0 or v > _U64_MAX for v in values):
            msg = f"{name} must lie in [0, 2**64 - 1]"
            raise ValueError(msg)
        return np.array(values, dtype=np.uint64).reshape(arr.shape)
    msg = f"{name} must be an unsigned 64-bit integer array, got dtype {arr.dtype}"
    raise TypeError(msg)


def _check_u64_int(value: int, name: str) -> int:
    """Validate a Python integer as uint64 and return it as a plain ``int``."""
    v = operator.index(value)
    if not 0 <= v <= _U64_MAX:
        msg = f"{name} must lie in [0, 2**64 - 1], got {v}"
        raise ValueError(msg)
    return v


def mulhilo64(a: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Full 64x64 -> 128-bit product of a uint64 array and a uint64 constant.

    Parameters
    ----------
    a : numpy.ndarray
        uint64 array.
    m : int
        Multiplier in ``[0, 2**64 - 1]``.

    Returns
    -------
    hi, lo : numpy.ndarray
        uint64 arrays with ``a * m == hi * 2**64 + lo`` exactly.

    Notes
    -----
    numpy has no 128-bit integer type, so the high word is assembled from 32-bit limbs
    (Hacker's Delight ``mulhu``). Every intermediate fits in 64 bits:
    ``a_lo*m_hi + (a_lo*m_lo >> 32) <= (2**32-1)**2 + 2**32 - 1 < 2**64``, and likewise for the
    second cross term, so no carry is ever lost. The low word is the wrapping uint64 product.

    Compatibility guarantee
    -----------------------
    Exact integer arithmetic: the result is the mathematical product, on every platform.
    """
    a = _as_u64(a, "a")
    m_lo, m_hi = _split32(_check_u64_int(m, "m"))
    a_lo = a & _MASK32
    a_hi = a >> _SHIFT32
    t1 = a_lo * m_hi + ((a_lo * m_lo) >> _SHIFT32)
    t2 = a_hi * m_lo + (t1 & _MASK32)
    hi = a_hi * m_hi + (t1 >> _SHIFT32) + (t2 >> _SHIFT32)
    lo = a * np.uint64(m)
    return hi, lo


def _philox_rounds(
    x0: np.ndarray,
    x1: np.ndarray,
    round_keys: list[np.uint64] | list[np.ndarray],
    bufs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Run the 10 Philox2x64 rounds in place on one chunk; returns the (out0, out1) buffers.

    Written as explicit ``out=`` ufunc calls so a round costs 17 passes over cache-resident
    buffers and allocates nothing. The arithmetic is :func:`mulhilo64` inlined.
    """
    a, b, c, d = bufs
    m = np.uint64(PHILOX_M2X64)
    m_lo, m_hi = _split32(PHILOX_M2X64)
    for k_r in round_keys:
        np.bitwise_and(x0, _MASK32, out=a)  # a = x0_lo
        np.right_shift(x0, _SHIFT32, out=b)  # b = x0_hi
        np.multiply(a, m_lo, out=c)
        np.right_shift(c, _SHIFT32, out=c)  # c = (x0_lo*m_lo) >> 32
        np.multiply(a, m_hi, out=a)
        np.add(a, c, out=a)  # a = t1 = x0_lo*m_hi + c   (cannot overflow)
        np.bitwise_and(a, _MASK32, out=c)
        np.right_shift(a, _SHIFT32, out=a)
        np.multiply(b, m_lo, out=d)
        np.add(d, c, out=d)  # d = t2 = x0_hi*m_lo + (t1 & mask)   (cannot overflow)
        np.right_shift(d, _SHIFT32, out=d)
        np.multiply(b, m_hi, out=b)
        np.add(b, a, out=b)
        np.add(b, d, out=b)  # b = hi(M * x0)
        np.bitwise_xor(b, k_r, out=b)
        np.bitwise_xor(x1, b, out=x1)  # x1 buffer now holds the new x0 = hi ^ k_r ^ x1
        np.multiply(x0, m, out=x0)  # x0 buffer now holds the new x1 = lo(M * x0)
        x0, x1 = x1, x0
    return x0, x1


def philox2x64_10(
    counter_lo: np.ndarray,
    counter_hi: np.ndarray,
    key: np.ndarray | int,
) -> tuple[np.ndarray, np.ndarray]:
    """Philox2x64-10 block function, vectorised over counters (and optionally keys).

    Parameters
    ----------
    counter_lo, counter_hi : numpy.ndarray
        Low and high 64-bit words of the 128-bit counter (uint64, or non-negative integers).
        They become the input lanes ``x0 = counter_lo`` and ``x1 = counter_hi``.
    key : numpy.ndarray or int
        64-bit key; broadcast against the counters.

    Returns
    -------
    out0, out1 : numpy.ndarray
        uint64 arrays of the broadcast shape. S3/S5/S6 consume ``out0`` only.

    Notes
    -----
    Ten rounds, ``r = 0..9``, with round key ``k_r = key + r * W (mod 2**64)``:
    ``P = M * x0`` (128-bit), ``x0 <- hi(P) ^ k_r ^ x1``, ``x1 <- lo(P)``;
    ``M = 0xD2B74407B1CE6E93``, ``W = 0x9E3779B97F4A7C15`` (``s3-day-effects.md`` §6.1). This is
    the Random123 ``philox2x64_R(10, ctr, key)`` with ``ctr.v = {counter_lo, counter_hi}``.

    Compatibility guarantee
    -----------------------
    The output stream is fixed: it reproduces the three Random123 known-answer vectors in
    ``segment2b_tests/data/philox2x64_kat.csv`` bit for bit, and every S3/S5/S6 artefact depends
    on it. Any change to this function is a byte-level breaking change for all seeds.
    """
    lo_in = _as_u64(counter_lo, "counter_lo")
    hi_in = _as_u64(counter_hi, "counter_hi")
    scalar_key = isinstance(key, int | np.integer)
    if scalar_key:
        k = _check_u64_int(key, "key")
        shape = np.broadcast_shapes(lo_in.shape, hi_in.shape)
        # Python ints keep the Weyl sum exact before reducing mod 2**64 (no numpy scalar
        # overflow warnings).
        round_keys_all: list[np.uint64] | list[np.ndarray] = [
            np.uint64((k + r * PHILOX_W64) & _U64_MAX) for r in range(_ROUNDS)
        ]
        key_flat = None
    else:
        key_arr = _as_u64(key, "key")
        shape = np.broadcast_shapes(lo_in.shape, hi_in.shape, key_arr.shape)
        key_flat = np.ascontiguousarray(np.broadcast_to(key_arr, shape)).ravel()
        round_keys_all = []

    # Copies: the rounds run in place and must never write into the caller's arrays.
    x0_all = np.array(np.broadcast_to(lo_in, shape), dtype=np.uint64, order="C").ravel()
    x1_all = np.array(np.broadcast_to(hi_in, shape), dtype=np.uint64, order="C").ravel()
    n = x0_all.size
    chunk = min(_CHUNK, max(n, 1))
    bufs = tuple(np.empty(chunk, dtype=np.uint64) for _ in range(4))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        width = stop - start
        work = (bufs[0][:width], bufs[1][:width], bufs[2][:width], bufs[3][:width])
        x0 = x0_all[start:stop]
        x1 = x1_all[start:stop]
        if key_flat is None:
            round_keys = round_keys_all
        else:
            k_chunk = key_flat[start:stop]
            round_keys = [k_chunk + np.uint64(r * PHILOX_W64 & _U64_MAX) for r in range(_ROUNDS)]
        # x0/x1 are views into x0_all/x1_all; with an even number of rounds the lane buffers
        # swap back, so out0 lands in x0_all and out1 in x1_all.
        _philox_rounds(x0, x1, round_keys, work)
    return x0_all.reshape(shape), x1_all.reshape(shape)


def uer(s: str) -> bytes:
    """Unambiguous encoding of a string: 4-byte little-endian UTF-8 length, then the UTF-8 bytes.

    Parameters
    ----------
    s : str
        Text to encode.

    Returns
    -------
    bytes
        ``LE32(len(utf8(s))) || utf8(s)``.

    Compatibility guarantee
    -----------------------
    Fixed by ``00-contracts.md``; every derived key, counter and run id hashes this form.
    """
    data = s.encode("utf-8")
    return len(data).to_bytes(4, "little") + data


@dataclass(frozen=True, slots=True)
class PhiloxStream:
    """Run-constant key and base counter of one Philox substream.

    Attributes
    ----------
    key : int
        64-bit Philox key.
    counter_hi, counter_lo : int
        High and low words of the 128-bit base counter; draw ``i`` uses ``base + i``.
    master_digest : bytes
        ``Mst``, the 32-byte master digest (kept for run-reports and test vectors).
    stream_digest : bytes
        ``H``, the 32-byte stream digest that ``key`` and the base counter are cut from.
    """

    key: int
    counter_hi: int
    counter_lo: int
    master_digest: bytes
    stream_digest: bytes

    @property
    def base_counter(self) -> int:
        """The 128-bit base counter ``counter_hi * 2**64 + counter_lo``."""
        return (self.counter_hi << 64) | self.counter_lo

    def counters(self, n_or_offsets: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counters ``base + i`` of this stream; see :func:`counters_from_base`."""
        return counters_from_base(self.counter_hi, self.counter_lo, n_or_offsets)


def derive_key_counter(
    domain_master: str,
    domain_stream: str,
    rng_stream_id: str,
    manifest_fingerprint_hex: str,
    seed: int,
) -> PhiloxStream:
    """Derive the Philox key and base counter of a substream (``s3-day-effects.md`` §6.2).

    Parameters
    ----------
    domain_master, domain_stream : str
        Domain-separation labels, taken from the policy (``rng_derivation``).
    rng_stream_id : str
        Policy ``rng_stream_id``.
    manifest_fingerprint_hex : str
        The run's manifest fingerprint, 64 lowercase hex characters (``hex64``).
    seed : int
        Run seed, ``0 <= seed < 2**64``.

    Returns
    -------
    PhiloxStream
        ``key`` = LE u64 of ``H[24:32]``; ``counter_hi`` = BE u64 of ``H[16:24]``;
        ``counter_lo`` = BE u64 of ``H[24:32]``, where
        ``Mst = SHA256(UER(domain_master) || mf_bytes || LE64(seed))`` and
        ``H = SHA256(Mst || UER(domain_stream) || UER(rng_stream_id))``.

    Raises
    ------
    ValueError
        If the fingerprint is not 64 lowercase hex characters (32 bytes) or the seed is outside
        the uint64 range. Callers map this to their own spec code (S3: ``2B-S3-032``).

    Notes
    -----
    The same eight bytes ``H[24:32]`` feed the key (little-endian) and the low counter word
    (big-endian); that is the design, not a typo.

    Compatibility guarantee
    -----------------------
    Reproduces the §6.5 vector (``Mst``, ``H``, key, hi0, lo0) bit for bit. Changing any byte of
    the derivation moves every draw of every seed.
    """
    if not isinstance(manifest_fingerprint_hex, str) or not _MF_HEX.fullmatch(
        manifest_fingerprint_hex
    ):
        msg = "manifest_fingerprint must be 64 lowercase hex characters (32 bytes)"
        raise ValueError(msg)
    seed_int = _check_u64_int(seed, "seed")
    mf_bytes = bytes.fromhex(manifest_fingerprint_hex)
    master = hashlib.sha256(uer(domain_master) + mf_bytes + seed_int.to_bytes(8, "little")).digest()
    h = hashlib.sha256(master + uer(domain_stream) + uer(rng_stream_id)).digest()
    return PhiloxStream(
        key=int.from_bytes(h[24:32], "little"),
        counter_hi=int.from_bytes(h[16:24], "big"),
        counter_lo=int.from_bytes(h[24:32], "big"),
        master_digest=master,
        stream_digest=h,
    )


def counters_from_base(
    base_hi: int,
    base_lo: int,
    n_or_offsets: int | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """128-bit counters ``base + i`` split into (hi, lo) words, with abort-on-wrap.

    Parameters
    ----------
    base_hi, base_lo : int
        Base counter words, each in ``[0, 2**64 - 1]``.
    n_or_offsets : int or numpy.ndarray
        Either a count ``n`` (offsets ``0 .. n-1``) or an array of non-negative offsets below
        ``2**64`` (any order; shape is preserved).

    Returns
    -------
    hi, lo : numpy.ndarray
        uint64 arrays; the low word carries into the high word at ``2**64``.

    Raises
    ------
    OverflowError
        If any counter would exceed ``2**128 - 1`` (``abort_on_wrap``; S3 maps it to
        ``2B-S3-064``). Checked on the largest offset before anything is returned.
    ValueError
        If a base word or an offset is out of range, or ``n`` is negative.

    Compatibility guarantee
    -----------------------
    ``counter(i) = base + i`` as an exact 128-bit sum: a stream's i-th draw is addressed by its
    rank alone, so drawing offsets ``[k]`` equals element ``k`` of drawing ``k + 1`` counters.
    """
    hi0 = _check_u64_int(base_hi, "base_hi")
    lo0 = _check_u64_int(base_lo, "base_lo")
    if isinstance(n_or_offsets, int | np.integer):
        n = operator.index(n_or_offsets)
        if n < 0:
            msg = f"counter count must be non-negative, got {n}"
            raise ValueError(msg)
        offsets = np.arange(n, dtype=np.uint64)
    else:
        offsets = _as_u64(n_or_offsets, "offsets")
    if offsets.size:
        # Exact check in Python ints: the vector carry below cannot see a wrap past 2**128.
        last = ((hi0 << 64) | lo0) + int(offsets.max())
        if last > _U128_MAX:
            msg = (
                f"128-bit Philox counter would wrap: base + {int(offsets.max())} exceeds "
                "2**128 - 1 (abort_on_wrap)"
            )
            raise OverflowError(msg)
    lo = offsets + np.uint64(lo0)  # wraps modulo 2**64 by design
    carry = (lo < np.uint64(lo0)).astype(np.uint64)  # wrapped iff the sum fell below the base
    hi = carry + np.uint64(hi0)  # cannot wrap: guarded by the 128-bit check above
    return hi, lo


def uniform_open01(out0: np.ndarray) -> np.ndarray:
    """S3 uniform map ``u = (double(out0) + 0.5) * 2**-64`` in binary64.

    Parameters
    ----------
    out0 : numpy.ndarray
        uint64 Philox lane-0 outputs.

    Returns
    -------
    numpy.ndarray
        float64 array in ``(0, 1]``.

    Notes
    -----
    ``double(out0)`` is the round-to-nearest-even conversion (numpy's uint64 -> float64 cast is
    the C conversion, which is correctly rounded; the tests pin this against Python's
    ``float(int)`` at the 2**53 and 2**64 boundaries). For ``out0 >= 2**53`` the ``+ 0.5`` is
    absorbed, and for ``out0 >= OUT0_UNIFORM_ONE_MIN`` (probability 2**-54) ``u`` is exactly 1.0.
    That value is **not** remapped: the design does not remap it either, so remapping would
    change bytes. Callers must check :func:`uniform_one_indices` and abort with their own code
    (S3: ``2B-S3-058``). This is the S3 map only; S5/S6 use ``(double(w) + 1) * 2**-64`` with a
    remap (``s5-router.md`` §4.3).

    Compatibility guarantee
    -----------------------
    Bit-exact binary64: ``uniform_open01(x)[i] == (float(int(x[i])) + 0.5) * 2.0**-64``.
    """
    arr = _as_u64(out0, "out0")
    return (arr.astype(np.float64) + 0.5) * _TWO_POW_M64


def uniform_one_indices(u: np.ndarray) -> np.ndarray:
    """Flat indices where a uniform from :func:`uniform_open01` is exactly 1.0.

    Parameters
    ----------
    u : numpy.ndarray
        Uniforms.

    Returns
    -------
    numpy.ndarray
        int64 indices into ``u.ravel()``, ascending; empty in all but astronomically rare cases.

    Compatibility guarantee
    -----------------------
    Pure predicate; it never alters draws.
    """
    return np.flatnonzero(np.asarray(u) == 1.0)
