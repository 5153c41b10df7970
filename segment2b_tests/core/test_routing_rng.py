"""Known answers for the S5/S6 routing streams (s5-router.md §4.4, §5; s6-edge-router.md §5).

Integers (M, D, key, w) and the uniforms are asserted bit-exact; so are the alias tables (they
are RNG-free binary64 arithmetic with a fixed operation order).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from segment2b.core.alias_table import AliasBuildError, build_alias, build_alias_tables
from segment2b.core.philox import philox2x64_10
from segment2b.core.routing_rng import (
    EDGE_DOMAIN_MASTER,
    EDGE_DOMAIN_STREAM,
    ROUTING_DOMAIN_MASTER,
    ROUTING_DOMAIN_STREAM,
    U_MAX_BELOW_ONE,
    derive_routing_stream,
    routing_draws,
    routing_uniform,
    routing_uniforms,
    site_id,
    site_ids,
)

PH = "ab" * 32
RID = "cd" * 16


def test_philox_kats_of_s5_section_4_4() -> None:
    z = np.zeros(1, dtype=np.uint64)
    o = np.full(1, 2**64 - 1, dtype=np.uint64)
    l0, l1 = philox2x64_10(z, z, 0)
    assert (int(l0[0]), int(l1[0])) == (0xCA00A0459843D731, 0x66C24222C9A845B5)
    l0, l1 = philox2x64_10(o, o, 2**64 - 1)
    assert (int(l0[0]), int(l1[0])) == (0x65B021D60CD8310F, 0x4D02F3222F86DF20)


def test_uniform_endpoints_and_remap() -> None:
    u = routing_uniform(np.array([0, 2**64 - 1, 2**64 - 1024, 2**64 - 1025, 2**53], np.uint64))
    assert u[0] == 2.0**-64 == 5.421010862427522e-20
    assert u[1] == u[2] == U_MAX_BELOW_ONE == 0.9999999999999999
    assert u[3] < 1.0 and u[3] == (float(2**64 - 1025) + 1.0) * 2.0**-64
    assert u[4] == (float(2**53) + 1.0) * 2.0**-64
    assert U_MAX_BELOW_ONE == 1.0 - 2.0**-53
    with pytest.raises(TypeError):
        routing_uniform(np.array([1.0]))


def test_uniform_is_bit_exact_against_python_floats() -> None:
    w = np.random.default_rng(3).integers(0, 2**64 - 1, size=2000, dtype=np.uint64, endpoint=True)
    expected = [(float(int(x)) + 1.0) * 2.0**-64 for x in w.tolist()]
    expected = [U_MAX_BELOW_ONE if e == 1.0 else e for e in expected]
    assert routing_uniform(w).tolist() == expected


def test_s5_stream_kat() -> None:
    s = derive_routing_stream(
        ROUTING_DOMAIN_MASTER,
        ROUTING_DOMAIN_STREAM,
        "2B.routing",
        seed=42,
        parameter_hash=PH,
        run_id=RID,
    )
    assert s.master_digest.hex().startswith("79ac6776")
    assert s.master_digest.hex().endswith("f2ba292a")
    assert s.stream_digest.hex() == (
        "e8c3dee28af04d39e35670677e017091d92b08fe5d7c7180a8ccd97cad514f33"
    )
    assert s.key == 0x334F51AD7CD9CCA8
    assert (s.counter_hi, s.counter_lo) == (0, 0)
    d = routing_draws(s, 4)
    assert d.w.tolist() == [
        0x8E0B0C5E2147B21E,
        0x2E44917C61E520C3,
        0x878877194B4AFDCB,
        0xC46D52A44FC323F3,
    ]
    assert d.u.tolist() == [
        0.5548560838517733,
        0.18073376928977725,
        0.5294260441544729,
        0.767293133845453,
    ]
    assert d.before_lo.tolist() == [0, 1, 2, 3] and d.after_lo.tolist() == [1, 2, 3, 4]
    assert d.before_hi.tolist() == d.after_hi.tolist() == [0, 0, 0, 0]


def test_s6_stream_kat() -> None:
    s = derive_routing_stream(
        EDGE_DOMAIN_MASTER,
        EDGE_DOMAIN_STREAM,
        "2B.routing_edge",
        seed=42,
        parameter_hash=PH,
        run_id=RID,
    )
    assert s.master_digest.hex().startswith("9b860992")
    assert s.master_digest.hex().endswith("d2df1532")
    assert s.stream_digest.hex() == (
        "7f31d1bcb04c1306b16ba4fc14f22c03cd9c240d3ecff6e5aa5b9564075397a6"
    )
    assert s.key == 0xA697530764955BAA
    d = routing_draws(s, 2)
    assert d.w.tolist() == [0x7D6B5CBCAAA37220, 0xAA906ADDF9BCF60A]
    assert d.u.tolist() == [0.48991946798436264, 0.666266135400054]


def test_streams_differ_only_by_key_and_labels_do_not_enter() -> None:
    a = derive_routing_stream(
        ROUTING_DOMAIN_MASTER,
        ROUTING_DOMAIN_STREAM,
        "2B.routing",
        seed=1,
        parameter_hash=PH,
        run_id=RID,
    )
    b = derive_routing_stream(
        EDGE_DOMAIN_MASTER, EDGE_DOMAIN_STREAM, "2B.routing", seed=1, parameter_hash=PH, run_id=RID
    )
    assert a.key != b.key and (a.counter_hi, a.counter_lo) == (b.counter_hi, b.counter_lo)


def test_counter_start_carry_and_wrap() -> None:
    s = derive_routing_stream(
        ROUTING_DOMAIN_MASTER,
        ROUTING_DOMAIN_STREAM,
        "2B.routing",
        seed=1,
        parameter_hash=PH,
        run_id=RID,
        counter_start=(0, 2**64 - 2),
    )
    d = routing_draws(s, 3)
    assert list(zip(d.before_hi.tolist(), d.before_lo.tolist(), strict=True)) == [
        (0, 2**64 - 2),
        (0, 2**64 - 1),
        (1, 0),
    ]
    assert list(zip(d.after_hi.tolist(), d.after_lo.tolist(), strict=True)) == [
        (0, 2**64 - 1),
        (1, 0),
        (1, 1),
    ]
    top = derive_routing_stream(
        ROUTING_DOMAIN_MASTER,
        ROUTING_DOMAIN_STREAM,
        "2B.routing",
        seed=1,
        parameter_hash=PH,
        run_id=RID,
        counter_start=(2**64 - 1, 2**64 - 2),
    )
    assert len(routing_draws(top, 1)) == 1  # ends exactly on 2**128 - 1
    with pytest.raises(OverflowError):
        routing_draws(top, 2)
    assert routing_uniforms(top, 1).tolist() == routing_draws(top, 1).u.tolist()
    with pytest.raises(OverflowError):
        routing_uniforms(top, 2)


@pytest.mark.parametrize("start", [(0, 0), (0, 2**64 - 3), (7, 5)])
def test_routing_uniforms_equal_the_draws_uniforms_block_by_block(start: tuple[int, int]) -> None:
    s = derive_routing_stream(
        ROUTING_DOMAIN_MASTER,
        ROUTING_DOMAIN_STREAM,
        "2B.routing",
        seed=9,
        parameter_hash=PH,
        run_id=RID,
        counter_start=start,
    )
    want = routing_draws(s, 11).u
    # Blocks that do not divide n, across the low word's carry for (0, 2**64 - 3).
    for block in (1, 3, 4, 64):
        got = routing_uniforms(s, 11, block=block)
        assert got.view(np.uint64).tolist() == want.view(np.uint64).tolist()
    assert routing_uniforms(s, 0).size == 0


@pytest.mark.parametrize(
    ("ph", "rid", "seed"),
    [("AB" * 32, RID, 1), ("ab" * 31, RID, 1), (PH, "cd" * 15, 1), (PH, RID, -1), (PH, RID, 2**64)],
)
def test_bad_identity_is_rejected(ph: str, rid: str, seed: int) -> None:
    with pytest.raises(ValueError):
        derive_routing_stream(
            ROUTING_DOMAIN_MASTER,
            ROUTING_DOMAIN_STREAM,
            "2B.routing",
            seed=seed,
            parameter_hash=ph,
            run_id=rid,
        )


def test_site_id_law() -> None:
    assert site_id(1694081450446801, "US", 1) == 3881771984399143709
    assert site_id(1111111111111111, "US", 1) == 14461754189438062945
    got = site_ids(np.array([1694081450446801, 2**64 - 1], np.uint64), ["US", "FR"], [1, 12])
    assert got.dtype == np.uint64
    assert got.tolist() == [3881771984399143709, site_id(2**64 - 1, "FR", 12)]


# ---------------------------------------------------------------------------------------------
# Alias tables (s5 §5)
# ---------------------------------------------------------------------------------------------


def test_alias_kats_of_s5_section_5() -> None:
    prob, alias = build_alias([0.5, 0.3, 0.2])
    assert prob.tolist() == [1.0, 0.8999999999999999, 0.6000000000000001]
    assert alias.tolist() == [0, 0, 0]
    prob, alias = build_alias([0.1, 0.3])
    assert prob.tolist() == [0.5, 1.0] and alias.tolist() == [1, 1]


def test_default_edge_alias_of_s6_section_5() -> None:
    prob, alias = build_alias([0.35, 0.25, 0.20, 0.20])
    assert prob.tolist() == [1.0, 0.8, 0.8, 0.8] and alias.tolist() == [0, 0, 0, 1]
    tables = build_alias_tables(np.array([0.35, 0.25, 0.20, 0.20]), np.array([0, 4]))
    picks = tables.decode(np.zeros(2, np.int64), np.array([0.48991946798436264, 0.666266135400054]))
    assert picks.tolist() == [0, 2]  # iad-us, then sin-sg


def _serial(w: list[float]) -> tuple[list[float], list[int]]:
    n = len(w)
    total = 0.0
    for x in w:
        total += x
    s = [x / total * n for x in w]
    small = deque(i for i in range(n) if s[i] < 1.0)
    large = deque(i for i in range(n) if s[i] >= 1.0)
    prob, alias = [1.0] * n, list(range(n))
    while small and large:
        a, b = small.popleft(), large.popleft()
        prob[a], alias[a] = s[a], b
        s[b] = s[b] - (1.0 - prob[a])
        (small if s[b] < 1.0 else large).append(b)
    return prob, alias


def test_vectorised_build_equals_serial_law_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    sizes = np.concatenate([rng.integers(1, 12, 3000), [1, 2, 64, 65, 300, 1000]])
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    w = rng.random(int(offsets[-1])) ** 4
    w[rng.random(w.size) < 0.15] = 0.0  # zero-weight entries stay in the tables (pitfall 9)
    w[offsets[:-1]] += 1e-3  # every table has positive mass
    tables = build_alias_tables(w, offsets)
    for t in range(sizes.size):
        a, b = int(offsets[t]), int(offsets[t + 1])
        prob, alias = _serial(w[a:b].tolist())
        assert tables.prob[a:b].tolist() == prob
        assert tables.alias[a:b].tolist() == alias


def test_decode_matches_the_serial_rule_and_is_unbiased() -> None:
    w = np.array([0.1, 0.0, 0.6, 0.3])
    tables = build_alias_tables(w, np.array([0, 4]))
    u = (np.arange(400_000) + 0.5) / 400_000
    picks = tables.decode(np.zeros(u.size, np.int64), u)
    freq = np.bincount(picks, minlength=4) / u.size
    assert np.abs(freq - w).max() < 1e-5  # stratified uniforms: exact up to the grid
    assert freq[1] == 0.0


def test_decode_equals_the_serial_rule_across_many_tables() -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 20, 500)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    tables = build_alias_tables(rng.random(int(offsets[-1])) + 1e-3, offsets)
    table = rng.integers(0, sizes.size, 20_000)
    u = rng.random(table.size)
    u[:3] = [np.nextafter(0.0, 1.0), 0.5, np.nextafter(1.0, 0.0)]
    want = []
    for t, x in zip(table.tolist(), u.tolist(), strict=True):
        n = int(sizes[t])
        j = int(np.floor(x * n))
        flat = int(offsets[t]) + j
        want.append(j if x * n - j < tables.prob[flat] else int(tables.alias[flat]))
    # strided uniforms (S5 decodes u[0::2] and u[1::2]) decode the same
    spread = np.repeat(u, 2)
    assert tables.decode(table, spread[0::2]).tolist() == want


@pytest.mark.parametrize("bad", [1.0, -0.25, np.nan, np.inf])
def test_decode_refuses_uniforms_outside_the_unit_interval(bad: float) -> None:
    tables = build_alias_tables(np.array([0.5, 0.5]), np.array([0, 2]))
    with pytest.raises(ValueError, match="outside its table"):
        tables.decode(np.zeros(3, np.int64), np.array([0.25, bad, 0.75]))


def test_bad_tables_raise_with_their_index() -> None:
    with pytest.raises(AliasBuildError) as exc:
        build_alias_tables(np.array([0.5, 0.5, 0.0, 0.0, 1.0]), np.array([0, 2, 4, 5]))
    assert exc.value.table == 1
    with pytest.raises(AliasBuildError):
        build_alias_tables(np.array([1.0, np.inf]), np.array([0, 2]))
    with pytest.raises(AliasBuildError) as exc:
        build_alias_tables(np.array([1.0]), np.array([0, 1, 1]))
    assert exc.value.table == 1
