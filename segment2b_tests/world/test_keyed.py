"""Keyed randomness: known answers, ranges and sampler properties."""

from __future__ import annotations

import hashlib
import statistics

import numpy as np
import pytest

from segment2b.world import keyed

# splitmix64 reference (Vigna): the first three outputs of the generator seeded with 0.
SPLITMIX64_SEED0 = (0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F)


def test_splitmix64_known_answers() -> None:
    words = keyed.counter_words(np.uint64(0), np.arange(3, dtype=np.uint64))
    assert [int(w) for w in words] == list(SPLITMIX64_SEED0)


def test_keyed_uniform_follows_the_sha256_law() -> None:
    key = "uw:42:mcc:18446744073709551615:0"
    x = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    expected = ((x >> 12) + 0.5) / 2**52
    got = keyed.keyed_uniforms(42, "mcc", [2**64 - 1])[0]
    assert got == expected


def test_uniforms_are_in_the_open_interval() -> None:
    extremes = np.array([0, 2**64 - 1], dtype=np.uint64)
    u = keyed.u64_to_uniform(extremes)
    assert u[0] == 2.0**-53 and u[1] == 1.0 - 2.0**-53
    many = keyed.counter_uniforms(np.uint64(7), np.arange(100_000, dtype=np.uint64))
    assert many.min() > 0.0 and many.max() < 1.0
    assert abs(many.mean() - 0.5) < 0.005


def test_inverse_normal_matches_the_stdlib_quantile() -> None:
    u = np.array([1e-12, 1e-6, 0.001, 0.02425, 0.1, 0.5, 0.8, 0.97575, 0.999, 1 - 1e-9])
    got = keyed.inverse_normal(u)
    want = np.array([statistics.NormalDist().inv_cdf(float(p)) for p in u])
    assert np.allclose(got, want, rtol=1.2e-9, atol=1e-12)


def test_poisson_mean_and_support() -> None:
    u = keyed.counter_uniforms(np.uint64(3), np.arange(50_000, dtype=np.uint64))
    for lam in (0.5, 3.0, 25.0, 120.0):
        k = keyed.poisson(u, np.full(u.size, lam))
        assert k.min() >= 0
        assert abs(k.mean() - lam) < 0.03 * lam + 0.02


def test_truncated_zipf_respects_bounds() -> None:
    u = keyed.counter_uniforms(np.uint64(5), np.arange(20_000, dtype=np.uint64))
    kmax = np.where(np.arange(u.size) % 2 == 0, 3, 11)
    k = keyed.truncated_zipf(u, 0.8, kmax)
    assert k.min() == 1
    assert (k <= kmax).all()
    assert (k[kmax == 11] > 3).any()


@pytest.mark.parametrize("total", [0, 1, 7, 100])
def test_largest_remainder_sums_to_total(total: int) -> None:
    out = keyed.largest_remainder(np.array([0.5, 0.3, 0.2]), total)
    assert out.sum() == total and (out >= 0).all()


def test_half_dirichlet_rows_sum_to_one_with_equal_means() -> None:
    u = keyed.counter_uniforms(np.uint64(11), np.arange(40_000, dtype=np.uint64)).reshape(-1, 4)
    d = keyed.half_dirichlet(u)
    assert np.allclose(d.sum(axis=1), 1.0)
    assert np.allclose(d.mean(axis=0), 0.25, atol=0.01)
    # Dirichlet(½): Var = a(1-a)/(A+1) with a = 1/4, A = 2 → 0.0625.
    assert abs(d[:, 0].var() - 0.0625) < 0.005
