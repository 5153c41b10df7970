"""Known-answer and property tests for the Philox2x64-10 core (``s3-day-effects.md`` §6).

Integer results (Philox words, key/counter derivation, the uniform map) are asserted bit-exact;
float transforms downstream of the uniform are asserted to 1e-12 relative (spec README,
decision 4).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from segment2b.core.normal import acklam_inverse_normal
from segment2b.core.philox import (
    OUT0_UNIFORM_ONE_MIN,
    PHILOX_M2X64,
    PHILOX_W64,
    PhiloxStream,
    counters_from_base,
    derive_key_counter,
    mulhilo64,
    philox2x64_10,
    uer,
    uniform_one_indices,
    uniform_open01,
)

KAT_CSV = Path(__file__).resolve().parents[1] / "data" / "philox2x64_kat.csv"
U64 = 2**64 - 1
REL = 1e-12

# §6.5 inputs and derivation.
MF = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SEED = 42
DOMAIN_MASTER = "2B.S3.master"
DOMAIN_STREAM = "2B.S3.day_effects"
STREAM_ID = "2B.day_effects.gamma"
MST_HEX = "6ece84dee130e66993c97d3f08d4fa352e93306bdb9a5312efd6546669dd51a5"
H_HEX = "1fe09c0d534e6ae95e6e40f42a4f82af69ca4073e7e903368db3fdef1c98f5d3"
KEY = 0xD3F5981CEFFDB38D
HI0 = 0x69CA4073E7E90336
LO0 = 0x8DB3FDEF1C98F5D3

# §6.5 table, rows i = 0..5: out0, u, z, scalar gamma (σ = 0.12), v2 σ, v2 w, v2 gamma.
TABLE_OUT0 = [
    0xBCAC096CB26FEF71,
    0xBD804B9D23462930,
    0x26FA2ADAE16FCDA6,
    0x8A899A3570989811,
    0xC7751FCA42090FE8,
    0x6C212D654C2217B0,
]
TABLE_U = [
    0.7370000734685502,
    0.7402388819348508,
    0.1522547516228194,
    0.5411621456592876,
    0.7791309231561494,
    0.4223812458332151,
]
TABLE_Z = [
    0.6341240740501295,
    0.6440820400457246,
    -1.0268109277655522,
    0.10336195152082242,
    0.7692613879938327,
    -0.19580538918094606,
]
TABLE_GAMMA_V1 = [
    1.071323595213431,
    1.0726045448719648,
    0.8777290681957532,
    1.0052169955578494,
    1.0888383201237875,
    0.9697697113003714,
]
TABLE_SIGMA_V2 = [
    0.09541890953354437,
    0.09636365121209432,
    0.09541890953354437,
    0.09636365121209432,
    0.09831131036010558,
    0.09831131036010558,
]
TABLE_W_V2 = [
    -0.008212611574082358,
    -0.008212611574082358,
    -0.0006597207950039368,
    -0.0006597207950039368,
    0.008546903001944335,
    -0.0012566230841127106,
]
TABLE_GAMMA_V2 = [
    1.0489004572649532,
    1.0504414546869252,
    0.9019562314683843,
    1.004668501266324,
    1.082573894294778,
    0.9749792752710876,
]
SIGMA_V1 = 0.12


# --- scalar reference (Python ints), written straight from §6.1 -------------------------------


def philox_ref(counter_lo: int, counter_hi: int, key: int) -> tuple[int, int]:
    """One Philox2x64-10 call with exact Python integers."""
    x0, x1, k = counter_lo, counter_hi, key
    for _ in range(10):
        p = PHILOX_M2X64 * x0
        x0, x1 = (p >> 64) ^ k ^ x1, p & U64
        k = (k + PHILOX_W64) & U64
    return x0, x1


def hashed_words(label: str, n: int, words: int) -> list[tuple[int, ...]]:
    """Deterministic pseudo-random uint64 tuples from SHA-256 (no global RNG state)."""
    rows = []
    for i in range(n):
        d = hashlib.sha256(f"{label}|{i}".encode()).digest()
        rows.append(tuple(int.from_bytes(d[8 * j : 8 * j + 8], "little") for j in range(words)))
    return rows


def u64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def load_kat() -> list[tuple[int, int, int, int, int]]:
    rows = []
    header_seen = False
    for line in KAT_CSV.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not header_seen:
            assert [c.strip() for c in line.split(",")] == [
                "key",
                "counter_lo",
                "counter_hi",
                "out0",
                "out1",
            ]
            header_seen = True
            continue
        key, lo, hi, out0, out1 = (int(c.strip(), 16) for c in line.split(","))
        rows.append((key, lo, hi, out0, out1))
    return rows


KAT = load_kat()


# --- Philox2x64-10 known answers --------------------------------------------------------------


def test_kat_file_has_the_three_random123_vectors() -> None:
    assert len(KAT) == 3
    header = KAT_CSV.read_text()
    assert "Random123" in header
    assert "x0 = counter_lo, x1 = counter_hi" in header


@pytest.mark.parametrize("row", KAT, ids=["zeros", "ones", "pi"])
def test_kat_scalar_key(row: tuple[int, int, int, int, int]) -> None:
    key, lo, hi, out0, out1 = row
    got0, got1 = philox2x64_10(u64([lo]), u64([hi]), key)
    assert (int(got0[0]), int(got1[0])) == (out0, out1)


def test_kat_array_key_in_one_call() -> None:
    keys, los, his, out0s, out1s = (list(col) for col in zip(*KAT, strict=True))
    got0, got1 = philox2x64_10(u64(los), u64(his), u64(keys))
    assert got0.tolist() == out0s
    assert got1.tolist() == out1s


@pytest.mark.parametrize("row", KAT, ids=["zeros", "ones", "pi"])
def test_scalar_reference_reproduces_kat(row: tuple[int, int, int, int, int]) -> None:
    key, lo, hi, out0, out1 = row
    assert philox_ref(lo, hi, key) == (out0, out1)


def test_vectorised_equals_scalar_reference_on_hashed_counters() -> None:
    rows = hashed_words("philox-ref", 1000, 3)
    # Include the edges of every word, where limb carries are most likely to go wrong.
    rows += [(0, 0, 0), (U64, U64, U64), (U64, 0, U64), (0, U64, 0), (1, U64, 2**63)]
    keys, los, his = (list(c) for c in zip(*rows, strict=True))
    want = [philox_ref(lo, hi, k) for k, lo, hi in rows]
    got0, got1 = philox2x64_10(u64(los), u64(his), u64(keys))
    assert list(zip(got0.tolist(), got1.tolist(), strict=True)) == want
    # Scalar-key path (the one S3 uses) over the same counters, several chunks long.
    lo_big = np.tile(u64(los), 40)
    hi_big = np.tile(u64(his), 40)
    got0, got1 = philox2x64_10(lo_big, hi_big, KEY)
    idx = [*range(0, lo_big.size, 997), lo_big.size - 1]
    for i in idx:
        assert (int(got0[i]), int(got1[i])) == philox_ref(int(lo_big[i]), int(hi_big[i]), KEY)


def test_broadcast_shapes_and_inputs_untouched() -> None:
    lo = u64([1, 2, 3]).reshape(3, 1)
    hi = u64([7, 8])
    lo_before, hi_before = lo.copy(), hi.copy()
    out0, out1 = philox2x64_10(lo, hi, 5)
    assert out0.shape == out1.shape == (3, 2)
    assert out0.dtype == np.uint64
    assert (int(out0[2, 1]), int(out1[2, 1])) == philox_ref(3, 8, 5)
    np.testing.assert_array_equal(lo, lo_before)
    np.testing.assert_array_equal(hi, hi_before)


def test_empty_counters() -> None:
    out0, out1 = philox2x64_10(u64([]), u64([]), 1)
    assert out0.shape == out1.shape == (0,)


def test_rejects_negative_or_out_of_range_words() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        philox2x64_10(np.array([-1], dtype=np.int64), u64([0]), 0)
    with pytest.raises(ValueError, match="key"):
        philox2x64_10(u64([0]), u64([0]), 2**64)
    with pytest.raises(TypeError):
        philox2x64_10(np.array([0.5]), u64([0]), 0)
    # Non-negative signed input is accepted and means the same counter.
    a, _ = philox2x64_10(np.array([5], dtype=np.int64), np.array([0], dtype=np.int64), 9)
    assert int(a[0]) == philox_ref(5, 0, 9)[0]


# --- 128-bit multiply, cross-checked against numpy's C Philox4x64 -----------------------------


def test_mulhilo64_equals_python_ints() -> None:
    values = [v for (v,) in hashed_words("mulhilo", 500, 1)] + [0, 1, 2**32 - 1, 2**32, U64]
    for m in (PHILOX_M2X64, 0xD2E7470EE14C6C93, U64, 0, 1, 2**32 + 1):
        hi, lo = mulhilo64(u64(values), m)
        assert hi.tolist() == [(v * m) >> 64 for v in values]
        assert lo.tolist() == [(v * m) & U64 for v in values]


def philox4x64_10(ctr: list[int], key: list[int]) -> list[int]:
    """Random123 Philox4x64-10 built on ``mulhilo64`` (test-only, for the numpy cross-check)."""
    m0, m1 = 0xD2E7470EE14C6C93, 0xCA5A826395121157
    w0, w1 = PHILOX_W64, 0xBB67AE8584CAA73B
    x = [u64([c]) for c in ctr]
    k0, k1 = key
    for _ in range(10):
        hi0, lo0 = mulhilo64(x[0], m0)
        hi1, lo1 = mulhilo64(x[2], m1)
        x = [hi1 ^ x[1] ^ np.uint64(k0), lo1, hi0 ^ x[3] ^ np.uint64(k1), lo0]
        k0, k1 = (k0 + w0) & U64, (k1 + w1) & U64
    return [int(v[0]) for v in x]


@pytest.mark.parametrize(
    ("counter", "key"),
    [(0, 0), (2**64 - 1, 12345), (2**200 + 7, 2**127 + 3), (2**256 - 2, 2**128 - 1)],
    ids=["zero", "carry-at-2**64", "wide", "top"],
)
def test_mulhilo64_matches_numpy_philox4x64(counter: int, key: int) -> None:
    # numpy.random.Philox is Philox4x64-10 (no 2x64 variant), but it shares the 64x64->128
    # multiply, so it independently checks the limb arithmetic against compiled C. numpy
    # increments its 256-bit counter (carrying at 2**64) before the first block.
    raw = np.random.Philox(counter=counter, key=key).random_raw(4)
    c = (counter + 1) % 2**256
    ctr = [(c >> (64 * i)) & U64 for i in range(4)]
    keys = [(key >> (64 * i)) & U64 for i in range(2)]
    assert raw.tolist() == philox4x64_10(ctr, keys)


# --- key and base-counter derivation (§6.2, §6.5) ---------------------------------------------


def test_uer() -> None:
    assert uer("") == b"\x00\x00\x00\x00"
    assert uer("2B") == b"\x02\x00\x00\x002B"
    assert uer("é") == b"\x02\x00\x00\x00\xc3\xa9"  # length counts UTF-8 bytes, not characters


def test_derivation_vector() -> None:
    s = derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, MF, SEED)
    assert s.master_digest.hex() == MST_HEX
    assert s.stream_digest.hex() == H_HEX
    assert s.key == KEY
    assert s.counter_hi == HI0
    assert s.counter_lo == LO0
    assert s.base_counter == (HI0 << 64) + LO0
    # The same eight bytes feed the key (LE) and lo0 (BE).
    assert s.key.to_bytes(8, "little") == s.counter_lo.to_bytes(8, "big")


def test_derivation_is_frozen() -> None:
    s = derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, MF, SEED)
    with pytest.raises(AttributeError):
        s.key = 0  # type: ignore[misc]
    assert isinstance(s, PhiloxStream)


def test_derivation_separates_inputs() -> None:
    base = derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, MF, SEED)
    others = [
        derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, MF, SEED + 1),
        derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, "2B.other", MF, SEED),
        derive_key_counter(DOMAIN_MASTER, "2B.S3.other", STREAM_ID, MF, SEED),
        derive_key_counter("2B.S3.other", DOMAIN_STREAM, STREAM_ID, MF, SEED),
        derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, "ff" * 32, SEED),
    ]
    assert len({(o.key, o.base_counter) for o in [base, *others]}) == 6


@pytest.mark.parametrize(
    "mf",
    [MF[:-2], MF + "00", MF.upper(), "zz" + MF[2:], "00 11" + MF[5:], ""],
    ids=["31-bytes", "33-bytes", "uppercase", "non-hex", "whitespace", "empty"],
)
def test_derivation_rejects_bad_fingerprint(mf: str) -> None:
    with pytest.raises(ValueError, match="manifest_fingerprint"):
        derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, mf, SEED)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_derivation_rejects_seed_out_of_range(seed: int) -> None:
    with pytest.raises(ValueError, match="seed"):
        derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, MF, seed)


def test_derivation_accepts_seed_range_edges() -> None:
    a = derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, MF, 0)
    b = derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, MF, 2**64 - 1)
    assert a.key != b.key


# --- §6.5 table: out0 bit-exact, u bit-exact, z and gamma to 1e-12 ----------------------------


def table_draws() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = derive_key_counter(DOMAIN_MASTER, DOMAIN_STREAM, STREAM_ID, MF, SEED)
    hi, lo = s.counters(6)
    out0, _ = philox2x64_10(lo, hi, s.key)
    return hi, lo, out0


def test_table_counters() -> None:
    hi, lo, _ = table_draws()
    assert hi.tolist() == [HI0] * 6
    assert lo.tolist() == [LO0 + i for i in range(6)]
    assert hex(int(lo[0])).endswith("f5d3")
    assert hex(int(lo[5])).endswith("f5d8")  # row 5 is base + 5


def test_table_out0_bit_exact() -> None:
    _, _, out0 = table_draws()
    assert out0.tolist() == TABLE_OUT0


def test_table_uniform_bit_exact() -> None:
    _, _, out0 = table_draws()
    # The uniform map is part of the integer contract (decision 4), so equality is exact.
    assert uniform_open01(out0).tolist() == TABLE_U


def test_table_normal_quantiles() -> None:
    z = acklam_inverse_normal(uniform_open01(table_draws()[2]))
    np.testing.assert_allclose(z, TABLE_Z, rtol=REL, atol=0)


def log_gamma(sigma: np.ndarray | float, z: np.ndarray, w: np.ndarray | float) -> np.ndarray:
    """§5.4: ``log_gamma = (-0.5*σ*σ) + σ*z + w``, evaluated left to right."""
    return (-0.5 * sigma * sigma) + sigma * z + w


def test_table_scalar_sigma_gamma() -> None:
    z = acklam_inverse_normal(uniform_open01(table_draws()[2]))
    lg = log_gamma(SIGMA_V1, z, 0.0)
    assert lg[0] == pytest.approx(0.06889488888601554, rel=REL, abs=0)
    np.testing.assert_allclose(np.exp(lg), TABLE_GAMMA_V1, rtol=REL, atol=0)


def test_table_v2_gamma_from_tabulated_sigma_and_weekly_term() -> None:
    # Only the Philox -> u -> z chain is under test; σ and w come from the table (their
    # derivation belongs to the S3 state). None of the six rows is clipped (§6.5).
    z = acklam_inverse_normal(uniform_open01(table_draws()[2]))
    lg = log_gamma(np.array(TABLE_SIGMA_V2), z, np.array(TABLE_W_V2))
    assert lg[0] == pytest.approx(0.04774243193246418, rel=REL, abs=0)
    np.testing.assert_allclose(np.exp(lg), TABLE_GAMMA_V2, rtol=REL, atol=0)


@pytest.mark.parametrize(
    ("merchant", "label", "u_want", "scaled_want"),
    [
        (1001, "2B.S3.sigma_jitter", 0.8107061010412799, None),
        (2002, "2B.S3.sigma_jitter", 0.783181177572142, None),
        (1001, "2B.S3.weekly_phase", None, 2.6267736743917207),
        (2002, "2B.S3.weekly_phase", None, 5.939297288056432),
    ],
)
def test_uniform_map_on_aux_u_vectors(
    merchant: int, label: str, u_want: float | None, scaled_want: float | None
) -> None:
    # §7.2 aux_u uses the same (x + 0.5) * 2**-64 map on a SHA-256 word: a second, independent
    # set of published vectors for uniform_open01.
    digest = hashlib.sha256(f"{MF}|{SEED}|{label}|{merchant}".encode()).digest()
    u = uniform_open01(u64([int.from_bytes(digest[:8], "big")]))
    if u_want is not None:
        assert u[0] == u_want
    if scaled_want is not None:
        assert (2.0 * math.pi) * u[0] == pytest.approx(scaled_want, rel=REL, abs=0)


# --- counters: carry and abort-on-wrap --------------------------------------------------------


def test_counter_carries_into_hi() -> None:
    hi, lo = counters_from_base(7, U64, 3)
    assert hi.tolist() == [7, 8, 8]
    assert lo.tolist() == [U64, 0, 1]
    out0, _ = philox2x64_10(lo, hi, KEY)
    assert int(out0[1]) == philox_ref(0, 8, KEY)[0]


def test_counter_offsets_equal_sequential_draw() -> None:
    # "advance equals drawing": addressing offset k directly gives element k of a run of draws.
    n = 50
    hi_all, lo_all = counters_from_base(HI0, U64 - 20, n)
    offsets = np.array([0, 3, 20, 21, 49], dtype=np.uint64)
    hi, lo = counters_from_base(HI0, U64 - 20, offsets)
    np.testing.assert_array_equal(hi, hi_all[offsets])
    np.testing.assert_array_equal(lo, lo_all[offsets])
    a, _ = philox2x64_10(lo_all, hi_all, KEY)
    b, _ = philox2x64_10(lo, hi, KEY)
    np.testing.assert_array_equal(b, a[offsets])
    for i in range(n):
        c = (HI0 << 64) + U64 - 20 + i
        assert (int(hi_all[i]), int(lo_all[i])) == (c >> 64, c & U64)


def test_counter_reaches_top_without_wrapping() -> None:
    hi, lo = counters_from_base(U64, U64 - 1, 2)
    assert hi.tolist() == [U64, U64]
    assert lo.tolist() == [U64 - 1, U64]
    hi, lo = counters_from_base(U64, 0, np.array([U64, 0], dtype=np.uint64))
    assert hi.tolist() == [U64, U64]
    assert lo.tolist() == [U64, 0]


@pytest.mark.parametrize(
    ("base_hi", "base_lo", "n_or_offsets"),
    [
        (U64, U64, 2),
        (U64, U64 - 1, 3),
        (U64, 5, np.array([0, U64 - 4], dtype=np.uint64)),
        (U64, 1, np.array([U64], dtype=np.uint64)),
    ],
)
def test_counter_wrap_aborts(base_hi: int, base_lo: int, n_or_offsets: int | np.ndarray) -> None:
    with pytest.raises(OverflowError, match="wrap"):
        counters_from_base(base_hi, base_lo, n_or_offsets)


def test_counter_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        counters_from_base(0, 0, -1)
    with pytest.raises(ValueError, match="non-negative"):
        counters_from_base(0, 0, np.array([1, -1]))
    with pytest.raises(ValueError, match="base_lo"):
        counters_from_base(0, 2**64, 1)
    hi, lo = counters_from_base(0, 0, 0)
    assert hi.size == lo.size == 0


# --- uniform map ------------------------------------------------------------------------------


def uniform_ref(x: int) -> float:
    # Python's int -> float conversion is correctly rounded (round-half-even).
    return (float(x) + 0.5) * 2.0**-64


def test_uniform_equals_scalar_reference() -> None:
    edges = [
        0,
        1,
        2**53 - 1,
        2**53,
        2**53 + 1,  # tie: rounds down to even 2**53
        2**53 + 3,  # tie: rounds up to even 2**53 + 4
        2**63 + 1024,  # tie at spacing 2048: rounds to even 2**63
        2**63 + 3072,  # tie: rounds up to 2**63 + 4096
        OUT0_UNIFORM_ONE_MIN - 1,
        OUT0_UNIFORM_ONE_MIN,
        U64,
    ]
    values = edges + [v for (v,) in hashed_words("uniform", 2000, 1)]
    got = uniform_open01(u64(values))
    assert got.tolist() == [uniform_ref(v) for v in values]


def test_uniform_conversion_is_round_half_even() -> None:
    got = u64([2**53 + 1, 2**53 + 3]).astype(np.float64)
    assert got.tolist() == [float(2**53), float(2**53 + 4)]


def test_uniform_range_and_exact_one() -> None:
    u = uniform_open01(u64([0, OUT0_UNIFORM_ONE_MIN - 1, OUT0_UNIFORM_ONE_MIN, U64]))
    assert u[0] == 2.0**-65
    assert u[1] == 1.0 - 2.0**-53
    assert u[2] == 1.0
    assert u[3] == 1.0
    assert uniform_one_indices(u).tolist() == [2, 3]
    assert uniform_one_indices(uniform_open01(u64(TABLE_OUT0))).size == 0
    assert uniform_one_indices(u.reshape(2, 2)).tolist() == [2, 3]
