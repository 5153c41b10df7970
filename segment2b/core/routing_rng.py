"""S5/S6 routing streams: key derivation, the routing uniform and the ``site_id`` law.

Pure numpy plus ``hashlib`` (no Dagster, no I/O, no clock). S5 (``s5-router.md`` §4) and S6
(``s6-edge-router.md`` §5) share one construction that differs from S3's in three places:

* the master digest hashes ``parameter_hash`` and ``run_id`` (not the manifest fingerprint);
* the key is ``LE64(D[24..31])`` but the base counter is the policy ``counter_start``, never
  digest-derived;
* the uniform is ``u = (double(w) + 1.0) * 2**-64`` with ``u == 1.0`` remapped to ``1 - 2**-53``.

Everything here is part of the byte contract of the RNG evidence logs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segment2b.core.philox import PhiloxStream, counters_from_base, philox2x64_10, uer

__all__ = [
    "EDGE_DOMAIN_MASTER",
    "EDGE_DOMAIN_STREAM",
    "ROUTING_DOMAIN_MASTER",
    "ROUTING_DOMAIN_STREAM",
    "UNIFORM_BLOCK",
    "U_MAX_BELOW_ONE",
    "RoutingDraws",
    "derive_routing_stream",
    "routing_counters",
    "routing_draws",
    "routing_uniform",
    "routing_uniforms",
    "site_id",
    "site_ids",
]

ROUTING_DOMAIN_MASTER = "mlr:2B.routing.master"
"""Master-digest domain string of the S5 routing stream (``s5-router.md`` §4.2)."""
ROUTING_DOMAIN_STREAM = "mlr:2B.routing.stream"
"""Stream-digest domain string of the S5 routing stream."""
EDGE_DOMAIN_MASTER = "mlr:2B.routing_edge.master"
"""Master-digest domain string of the S6 edge stream (``s6-edge-router.md`` §5)."""
EDGE_DOMAIN_STREAM = "mlr:2B.routing_edge.stream"
"""Stream-digest domain string of the S6 edge stream."""

U_MAX_BELOW_ONE = float.fromhex("0x1.fffffffffffffp-1")
"""``1 - 2**-53``: the value a routing uniform of exactly 1.0 is remapped to."""

_TWO_POW_M64 = 2.0**-64
_U64_MAX = 2**64 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")


def derive_routing_stream(
    domain_master: str,
    domain_stream: str,
    rng_stream_id: str,
    *,
    seed: int,
    parameter_hash: str,
    run_id: str,
    counter_start: tuple[int, int] = (0, 0),
) -> PhiloxStream:
    """Key and base counter of a run-scoped routing stream (S5 §4.2, S6 §5).

    Parameters
    ----------
    domain_master, domain_stream : str
        Domain strings: :data:`ROUTING_DOMAIN_MASTER` / :data:`ROUTING_DOMAIN_STREAM` for S5,
        :data:`EDGE_DOMAIN_MASTER` / :data:`EDGE_DOMAIN_STREAM` for S6.
    rng_stream_id : str
        The policy stream id (``"2B.routing"``, ``"2B.routing_edge"``).
    seed : int
        Run seed in ``[0, 2**64 - 1]``.
    parameter_hash : str
        64 lowercase hex characters (32 raw bytes ``PH``).
    run_id : str
        32 lowercase hex characters (16 raw bytes ``RID``).
    counter_start : tuple of int
        ``(hi, lo)`` from the policy ``basis.counter_start``; it always overrides any
        digest-derived counter.

    Returns
    -------
    PhiloxStream
        ``key = LE64(D[24..31])`` with
        ``M = SHA256(UER(domain_master) || PH || RID || LE64(seed))`` and
        ``D = SHA256(M || UER(domain_stream) || UER(rng_stream_id))``;
        ``counter_hi, counter_lo = counter_start``.

    Raises
    ------
    ValueError
        If ``parameter_hash``/``run_id`` have the wrong length or alphabet, or the seed or a
        counter word is outside the uint64 range (callers map this to ``2B-S5-053`` /
        ``2B-S6-053``).

    Compatibility guarantee
    -----------------------
    Reproduces the ``s5-router.md`` §4.4 and ``s6-edge-router.md`` §5 vectors (``M``, ``D``,
    key) bit for bit; substream labels never enter the derivation.
    """
    if not isinstance(parameter_hash, str) or not _HEX64.fullmatch(parameter_hash):
        msg = "parameter_hash must be 64 lowercase hex characters (32 bytes)"
        raise ValueError(msg)
    if not isinstance(run_id, str) or not _HEX32.fullmatch(run_id):
        msg = "run_id must be 32 lowercase hex characters (16 bytes)"
        raise ValueError(msg)
    for name, value in (("seed", seed), ("counter_start.hi", counter_start[0])):
        if not 0 <= int(value) <= _U64_MAX:
            msg = f"{name} must lie in [0, 2**64 - 1], got {value}"
            raise ValueError(msg)
    if not 0 <= int(counter_start[1]) <= _U64_MAX:
        msg = f"counter_start.lo must lie in [0, 2**64 - 1], got {counter_start[1]}"
        raise ValueError(msg)
    master = hashlib.sha256(
        uer(domain_master)
        + bytes.fromhex(parameter_hash)
        + bytes.fromhex(run_id)
        + int(seed).to_bytes(8, "little")
    ).digest()
    stream = hashlib.sha256(master + uer(domain_stream) + uer(rng_stream_id)).digest()
    return PhiloxStream(
        key=int.from_bytes(stream[24:32], "little"),
        counter_hi=int(counter_start[0]),
        counter_lo=int(counter_start[1]),
        master_digest=master,
        stream_digest=stream,
    )


def routing_uniform(w: np.ndarray) -> np.ndarray:
    """S5/S6 uniform map ``u = (double(w) + 1.0) * 2**-64``, remapping 1.0 to ``1 - 2**-53``.

    Parameters
    ----------
    w : numpy.ndarray
        uint64 Philox lane-0 outputs.

    Returns
    -------
    numpy.ndarray
        float64 uniforms in the open interval ``(0, 1)``.

    Notes
    -----
    ``double(w)`` is numpy's correctly rounded uint64 -> float64 cast; ``+ 1.0`` rounds to
    nearest-even in binary64 and the power-of-two scaling is exact. Every ``w`` from
    ``2**64 - 1024`` up rounds to ``u == 1.0`` and is remapped (``s5-router.md`` §4.3).

    Compatibility guarantee
    -----------------------
    Bit-exact binary64: ``routing_uniform(w)[i] == (float(int(w[i])) + 1.0) * 2.0**-64``
    except that exactly 1.0 becomes ``0x1.fffffffffffffp-1``.
    """
    arr = np.asarray(w)
    if arr.dtype != np.uint64:
        msg = f"w must be a uint64 array, got dtype {arr.dtype}"
        raise TypeError(msg)
    u = (arr.astype(np.float64) + 1.0) * _TWO_POW_M64
    u[u == 1.0] = U_MAX_BELOW_ONE
    return u


@dataclass(frozen=True, slots=True)
class RoutingDraws:
    """One single-uniform draw per counter: ``before``/``after`` words, ``w`` and ``u``.

    Attributes
    ----------
    before_hi, before_lo, after_hi, after_lo : numpy.ndarray
        uint64 words of the 128-bit counters; ``after = before + 1`` with carry.
    w : numpy.ndarray
        uint64 lane-0 outputs.
    u : numpy.ndarray
        float64 routing uniforms (:func:`routing_uniform`).
    """

    before_hi: np.ndarray
    before_lo: np.ndarray
    after_hi: np.ndarray
    after_lo: np.ndarray
    w: np.ndarray
    u: np.ndarray

    def __len__(self) -> int:
        return int(self.w.size)


def routing_counters(
    stream: PhiloxStream, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(before_hi, before_lo, after_hi, after_lo)`` of ``n`` consecutive single-counter
    events: event ``k`` has ``before = ctr0 + k`` and ``after = ctr0 + k + 1``.

    Counters alone need no Philox call, so S5 can start serialising its trace (which only
    echoes counters) while the draws are still being decoded; :func:`routing_draws` uses the
    same words.

    Raises
    ------
    OverflowError
        If ``ctr0 + n`` exceeds ``2**128 - 1`` (``abort_on_wrap``), the last after-counter
        included.
    """
    before_hi, before_lo = counters_from_base(stream.counter_hi, stream.counter_lo, n)
    if n:
        # after-counter of the last event must not wrap either.
        counters_from_base(stream.counter_hi, stream.counter_lo, np.array([n], dtype=np.uint64))
    after_hi, after_lo = counters_from_base(
        stream.counter_hi, stream.counter_lo, np.arange(1, n + 1, dtype=np.uint64)
    )
    return before_hi, before_lo, after_hi, after_lo


def routing_draws(stream: PhiloxStream, n: int) -> RoutingDraws:
    """Draw ``n`` consecutive events of a routing stream: event ``k`` uses ``ctr0 + k``.

    Parameters
    ----------
    stream : PhiloxStream
        From :func:`derive_routing_stream`.
    n : int
        Number of events (each consumes one counter: ``blocks = 1``, ``draws = "1"``).

    Returns
    -------
    RoutingDraws
        Counters before and after each event, the raw words and the uniforms.

    Raises
    ------
    OverflowError
        If ``ctr0 + n`` would exceed ``2**128 - 1`` (``abort_on_wrap``; S5 maps it to
        ``2B-S5-052``, S6 to ``2B-S6-052``). The *after*-counter of the last event is checked
        too, so an event never ends on a wrapped counter.

    Compatibility guarantee
    -----------------------
    ``w = Philox2x64-10((x0=lo, x1=hi), key).lane0``; lane 1 is discarded.
    """
    before_hi, before_lo, after_hi, after_lo = routing_counters(stream, n)
    w, _lane1 = philox2x64_10(before_lo, before_hi, stream.key)
    return RoutingDraws(before_hi, before_lo, after_hi, after_lo, w, routing_uniform(w))


UNIFORM_BLOCK = 1 << 20
"""Counters per Philox call in :func:`routing_uniforms` (bounds its temporaries to ~40 MB)."""


def routing_uniforms(stream: PhiloxStream, n: int, *, block: int = UNIFORM_BLOCK) -> np.ndarray:
    """The uniforms of :func:`routing_draws` alone: ``u`` of events ``0 .. n-1``.

    For callers whose counters follow from the event number (S5: event ``k`` uses
    ``ctr0 + k``), so only the uniforms need to be kept; counters and raw words exist one
    block at a time. Raises ``OverflowError`` exactly when :func:`routing_draws` does.

    Compatibility guarantee
    -----------------------
    ``routing_uniforms(s, n) == routing_draws(s, n).u`` bit for bit.
    """
    if n:
        # The after-counter of the last event must not wrap (as in routing_counters).
        counters_from_base(stream.counter_hi, stream.counter_lo, np.array([n], dtype=np.uint64))
    u = np.empty(n, dtype=np.float64)
    for a in range(0, n, block):
        b = min(a + block, n)
        hi, lo = counters_from_base(
            stream.counter_hi, stream.counter_lo, np.arange(a, b, dtype=np.uint64)
        )
        w, _lane1 = philox2x64_10(lo, hi, stream.key)
        u[a:b] = routing_uniform(w)
    return u


def site_id(merchant_id: int, legal_country_iso: str, site_order: int) -> int:
    """``low64(SHA256(utf8("{merchant_id}:{legal_country_iso}:{site_order}")))``.

    Parameters
    ----------
    merchant_id : int
        Decimal merchant id (uint64).
    legal_country_iso : str
        ISO2 as stored (no case folding).
    site_order : int
        Decimal site order (>= 1).

    Returns
    -------
    int
        Little-endian uint64 of digest bytes 24..31 (``s5-router.md`` §6 step 4,
        ``upstream-world.md`` §4 item 8). S5 and S7 must use this one helper.

    Compatibility guarantee
    -----------------------
    ``site_id(1694081450446801, "US", 1) == 3881771984399143709`` (``s5-router.md`` §7).
    """
    text = f"{int(merchant_id)}:{legal_country_iso}:{int(site_order)}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[24:32], "little")


def site_ids(
    merchant_ids: Sequence[int] | np.ndarray,
    legal_country_isos: Sequence[str],
    site_orders: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """:func:`site_id` over aligned sequences, returned as a uint64 array.

    SHA-256 has no numpy vector form; this is one ``hashlib`` call per *site* (tens of
    thousands), never per arrival.
    """
    mids = np.asarray(merchant_ids, dtype=np.uint64).tolist()
    orders = np.asarray(site_orders, dtype=np.int64).tolist()
    isos = list(legal_country_isos)
    sha = hashlib.sha256
    out = [
        int.from_bytes(sha(f"{m}:{c}:{o}".encode()).digest()[24:32], "little")
        for m, c, o in zip(mids, isos, orders, strict=True)
    ]
    return np.array(out, dtype=np.uint64)
