"""The S4 regularizer (``s4-group-weights.md`` §6): test vectors, properties, serial sums."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from segment2b.core.group_mix import (
    EPSILON,
    RANK_GUARD,
    RegularizerError,
    RegularizerParams,
    regularize,
    regularize_one,
    segment_entropy,
    segment_ids,
    segment_sum,
)

CURRENT = RegularizerParams(soft_cap=0.68, strength=0.52, entropy_floor=0.62)

# §6 table, current policy (0.68 / 0.52 / 0.62): p_raw -> (p, λ_c, λ_e, H_post, delta_mass).
VECTORS = [
    (
        [0.9, 0.07, 0.03],
        [0.6053333333333333, 0.20693333333333336, 0.18773333333333334],
        0.0,
        0.0,
        0.9438847138506681,
        0.29466666666666674,
    ),
    (
        [0.97, 0.03],
        [0.6799999999999999, 0.32],
        0.20212765957446796,
        0.0,
        0.6268694575724264,
        0.29000000000000004,
    ),
    (
        [0.5, 0.3, 0.2],
        [0.41333333333333333, 0.31733333333333336, 0.2693333333333333],
        0.0,
        0.0,
        1.0827293299604843,
        0.08666666666666667,
    ),
    (
        [0.999999, 0.000001],
        [0.6800000000000002, 0.31999999999999995],
        0.24999849999699986,
        0.0,
        0.6268694575724263,
        0.3199989999999999,
    ),
]


@pytest.mark.parametrize("vector", VECTORS)
def test_current_policy_vectors_exact(vector: tuple[Any, ...]) -> None:
    p_raw, p, lam_c, lam_e, h_post, delta = vector
    out = regularize_one(p_raw, CURRENT)
    assert repr(out["p"]) == repr(p)
    assert repr(out["lambda_c"]) == repr(float(lam_c))
    assert repr(out["lambda_e"]) == repr(float(lam_e))
    assert repr(out["h_post"]) == repr(h_post)
    assert repr(out["delta_mass"]) == repr(delta)
    assert out["lambda_s"] == 0.52
    assert out["applied"] is True


def test_entropy_floor_vector_two_groups() -> None:
    out = regularize_one([0.95, 0.05], RegularizerParams(1.0, 0.0, 0.62))
    assert repr(out["lambda_e"]) == "0.5802838105737465"
    assert repr(out["p"]) == "[0.6888722852418141, 0.3111277147581859]"
    assert repr(out["h_post"]) == "0.6200000000033086"
    assert out["lambda_c"] == 0.0 and out["lambda_s"] == 0.0


def test_entropy_floor_vector_with_cap_and_strength() -> None:
    out = regularize_one([0.8, 0.15, 0.05], RegularizerParams(0.7, 0.1, 1.0))
    assert repr(out["lambda_c"]) == "0.12698412698412725"
    assert repr(out["lambda_e"]) == "0.4160716689511901"
    assert repr(out["p"]) == "[0.5474403880512304, 0.2492198475513024, 0.20333976439746734]"


def test_entropy_floor_above_ln_n_hits_rank_guard() -> None:
    out = regularize_one([0.6, 0.4], RegularizerParams(1.0, 0.0, 0.7))
    assert out["lambda_e"] == RANK_GUARD == 0.999999999
    assert repr(out["p"]) == "[0.5000000001, 0.4999999999]"


def test_batched_equals_one_at_a_time() -> None:
    vectors = [v[0] for v in VECTORS] + [[1.0], [0.25, 0.25, 0.25, 0.25]]
    flat = [x for v in vectors for x in v]
    res = regularize(flat, [len(v) for v in vectors], CURRENT)
    pos = 0
    for i, v in enumerate(vectors):
        single = regularize_one(v, CURRENT)
        assert res.p[pos : pos + len(v)].tolist() == single["p"]
        assert res.h_post[i] == single["h_post"]
        assert res.delta_mass[i] == single["delta_mass"]
        assert res.lambda_c[i] == single["lambda_c"]
        pos += len(v)


def test_single_group_is_untouched() -> None:
    res = regularize([1.0, 0.7], [1, 1], CURRENT)
    assert res.p.tolist() == [1.0, 0.7]
    assert not res.applied.any()
    assert res.lambda_s.tolist() == [0.0, 0.0]
    assert res.delta_mass.tolist() == [0.0, 0.0]
    assert res.h_post.tolist() == res.h_pre.tolist()


def _random_mixes(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = rng.integers(2, 9, size=count)
    parts = []
    for n in lengths:
        v = rng.dirichlet(np.full(n, 0.3))
        # Inject ties so that "ties stay tied" is exercised.
        if n >= 3 and rng.random() < 0.3:
            v[1] = v[2]
        parts.append(v / v.sum())
    return np.concatenate(parts), lengths


@pytest.mark.parametrize(
    ("params", "strict"),
    [
        (CURRENT, True),
        (RegularizerParams(0.9, 0.06, 0.3), True),
        # Cap below 1/n for many n and a floor above ln n: λ = 1 − 1e-9 keeps order in exact
        # arithmetic, but differences below one ulp may round to ties (weak order only).
        (RegularizerParams(0.3, 0.0, 2.5), False),
        (RegularizerParams(1.0, 1.0, 0.0), False),  # λ_s = 1: everything becomes uniform
    ],
)
def test_rank_order_ties_and_mass(params: RegularizerParams, strict: bool) -> None:
    rng = np.random.default_rng(11)
    p_raw, lengths = _random_mixes(rng, 400)
    res = regularize(p_raw, lengths, params)
    seg = segment_ids(lengths)
    total = segment_sum(res.p, seg, lengths.size)
    assert np.abs(total - 1.0).max() <= EPSILON
    pos = 0
    for n in lengths.tolist():
        a = p_raw[pos : pos + n]
        b = res.p[pos : pos + n]
        for i in range(n):
            for j in range(n):
                if a[i] > a[j]:
                    assert b[i] > b[j] if strict else b[i] >= b[j]
                if a[i] == a[j]:
                    assert b[i] == b[j]
        pos += n
    assert ((res.p >= 0.0) & (res.p <= 1.0)).all()


def _reference(p: list[float], prm: RegularizerParams) -> tuple[list[float], float, float, float]:
    """Scalar transcription of §6 in Python floats (the design's evaluation order)."""

    def clamp(x: float, lo: float, hi: float) -> float:
        return min(max(x, lo), hi)

    def blend(v: list[float], lam: float) -> list[float]:
        lam = clamp(lam, 0.0, 1.0)
        if lam <= 0:
            return list(v)
        u = 1.0 / len(v)
        return [(1.0 - lam) * x + lam * u for x in v]

    def entropy(v: list[float]) -> float:
        s = 0.0
        for x in v:
            if x > 0:
                s += x * math.log(x)
        return -s

    v = list(p)
    n = len(v)
    u = 1.0 / n
    if prm.strength > 0:
        v = blend(v, prm.strength)
    m = max(v)
    lam_c = 0.0
    if prm.soft_cap < 1 and m > prm.soft_cap + EPSILON and m > u + EPSILON:
        lam_c = clamp((m - prm.soft_cap) / (m - u), 0.0, 1.0)
        if prm.preserve_rank_order and lam_c >= 1:
            lam_c = 1 - 1e-9
        v = blend(v, lam_c)
    lam_e = 0.0
    if prm.entropy_floor > 0:
        target = prm.entropy_floor
        if target <= entropy(v) + EPSILON:
            lam_e = 0.0
        elif target >= math.log(n) - EPSILON:
            lam_e = 1.0
        else:
            lo, hi = 0.0, 1.0
            for _ in range(36):
                mid = (lo + hi) / 2
                if entropy(blend(v, mid)) + EPSILON < target:
                    lo = mid
                else:
                    hi = mid
            lam_e = hi
        if prm.preserve_rank_order and lam_e >= 1:
            lam_e = 1 - 1e-9
        if lam_e > 0:
            v = blend(v, lam_e)
    v = [0.0 if x < 0 else x for x in v]
    t = 0.0
    for x in v:
        t += x
    v = [x / t for x in v]
    dm = 0.0
    for a, b in zip(v, p, strict=True):
        dm += abs(a - b)
    return v, lam_c, lam_e, 0.5 * dm


def test_bit_identical_to_scalar_reference() -> None:
    rng = np.random.default_rng(5)
    p_raw, lengths = _random_mixes(rng, 150)
    for prm in (CURRENT, RegularizerParams(0.75, 0.2, 1.1), RegularizerParams(0.9, 0.06, 0.3)):
        res = regularize(p_raw, lengths, prm)
        pos = 0
        for i, n in enumerate(lengths.tolist()):
            p, lam_c, lam_e, dm = _reference(p_raw[pos : pos + n].tolist(), prm)
            assert res.p[pos : pos + n].tolist() == p
            assert (res.lambda_c[i], res.lambda_e[i], res.delta_mass[i]) == (lam_c, lam_e, dm)
            pos += n


def test_serial_sum_matches_python_loop() -> None:
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 40, size=300)
    total = int(lengths.sum())
    values = rng.random(total) * 10.0 ** rng.integers(-9, 9, size=total)
    seg = segment_ids(lengths)
    got = segment_sum(values, seg, lengths.size)
    pos = 0
    for i, n in enumerate(lengths.tolist()):
        s = 0.0
        for x in values[pos : pos + n].tolist():
            s += x
        assert got[i] == s
        pos += n


def test_entropy_uses_natural_log_and_skips_zeros() -> None:
    h = segment_entropy(np.array([0.5, 0.5, 1.0, 0.0, 1.0]), np.array([0, 0, 1, 2, 2]), 3)
    assert h[0] == -(0.5 * math.log(0.5) + 0.5 * math.log(0.5))
    assert h[1] == 0.0 and math.copysign(1.0, h[1]) == 1.0
    assert h[2] == 0.0


def test_negative_input_raises_with_segment() -> None:
    with pytest.raises(RegularizerError) as exc:
        regularize([0.5, 0.5, 1.5, -0.5], [2, 2], RegularizerParams(1.0, 0.0, 0.0))
    assert exc.value.segment == 1 and exc.value.reason == "negative"


def test_zero_total_raises() -> None:
    with pytest.raises(RegularizerError) as exc:
        regularize([0.0, 0.0], [2], RegularizerParams(1.0, 0.0, 0.0))
    assert exc.value.reason == "total"


def test_sum_to_one_false_keeps_unit_mass_vectors() -> None:
    prm = RegularizerParams(1.0, 0.0, 0.0, sum_to_one=False)
    res = regularize([0.75, 0.25, 0.6, 0.2], [2, 2], prm)
    assert res.p[:2].tolist() == [0.75, 0.25]  # |t - 1| <= eps: left alone
    assert res.p[2:].tolist() == [0.6 / 0.8, 0.2 / 0.8]  # renormalised
    assert res.applied.tolist() == [False, True]


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="lengths"):
        regularize([0.5, 0.5], [3], CURRENT)
