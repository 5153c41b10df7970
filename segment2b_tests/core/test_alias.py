"""Alias primitives: the s2 §6 worked example byte-for-byte, grid laws, worklists, layout."""

from __future__ import annotations

import hashlib
import heapq
import itertools

import numpy as np
import pytest

from segment2b.core import alias as al

G24 = 1 << 24
EPS_Q = 1.2e-07
# s2-alias-tables.md §6 (merchant 1 of the S1 worked example).
P_WORKED = np.array([0.8000000000000002, 0.058138495739320555, 0.1418615042606794])
PAYLOAD_WORKED = "03000000200000000000000000000000ffffffff00000000007ea62c00000000001bf36c00000000"
CHECKSUM_WORKED = "703eae61d4f84ce9e2f67d5471033e3a8fa59f0545cf3b8f367f666c1744e8c0"


def _one(n: int) -> np.ndarray:
    return np.array([0, n], dtype=np.int64)


def _encode_all(p: np.ndarray, offsets: np.ndarray, **layout: object) -> al.BlobLayout:
    grid = al.grid_masses(p, offsets, 24, residual="signed", one_hot_epsilon=1e-12)
    assert not grid.unassigned.any()
    prob, alias = al.walker_vose(grid.masses, offsets, 24, tiny_negative_epsilon=1e-15)
    q = al.encode_prob_q(prob, 32)
    kwargs: dict[str, object] = {"endianness": "little", "alignment_bytes": 8, **layout}
    return al.assemble_blob(q, alias, offsets, prob_qbits=32, **kwargs)  # type: ignore[arg-type]


def _hashed_vectors(count: int) -> list[np.ndarray]:
    """Random-ish probability vectors from SHA-256 (no global RNG), with edge cases mixed in."""
    out = []
    for n in range(count):
        digest = hashlib.sha256(f"alias-test|{n}".encode()).digest()
        k = 1 + digest[0] % 40 if n % 7 else 1 + int.from_bytes(digest[:2], "big") % 400
        raw = np.array(
            [
                int.from_bytes(hashlib.sha256(f"w|{n}|{i}".encode()).digest()[:8], "big")
                for i in range(k)
            ],
            dtype=np.float64,
        )
        if n % 5 == 0:
            raw = raw**3  # heavier tails
        if n % 11 == 0 and k > 2:
            raw[::2] = 0.0  # zero-mass sites
        if n % 13 == 0:
            raw[:] = 0.0
            raw[k - 1] = 1.0  # one-hot
        out.append(raw / raw.sum())
    return out


# --- worked example ---------------------------------------------------------------------------


def test_worked_example_grid_worklist_and_q() -> None:
    grid = al.grid_masses(P_WORKED, _one(3), 24, residual="signed", one_hot_epsilon=1e-12)
    assert grid.masses.tolist() == [13421773, 975402, 2380041]
    assert grid.delta.tolist() == [0]
    prob, alias = al.walker_vose(grid.masses, _one(3), 24, tiny_negative_epsilon=1e-15)
    assert prob.tolist() == [1.0, 0.1744154691696167, 0.42558449506759644]
    assert alias.tolist() == [0, 0, 0]
    q = al.encode_prob_q(prob, 32)
    assert q.tolist() == [0xFFFFFFFF, 0x2CA67E00, 0x6CF31B00]


def test_worked_example_bytes_checksum_and_index_fields() -> None:
    layout = _encode_all(P_WORKED, _one(3))
    assert layout.blob.hex() == PAYLOAD_WORKED
    assert layout.checksums == (CHECKSUM_WORKED,)
    assert layout.sha256 == CHECKSUM_WORKED  # single merchant: blob digest = slice checksum
    assert layout.offsets.tolist() == [0]
    assert layout.lengths.tolist() == [40]


def test_worked_example_decode_is_exactly_the_grid() -> None:
    parsed = al.parse_slice(bytes.fromhex(PAYLOAD_WORKED), endianness="little")
    assert (parsed.n_sites, parsed.prob_qbits) == (3, 32)
    p_hat = parsed.probabilities()
    assert p_hat.tolist() == [0.800000011920929, 0.058138489723205566, 0.14186149835586548]
    assert p_hat.tolist() == (np.array([13421773, 975402, 2380041]) / G24).tolist()
    assert float(p_hat.sum()) == 1.0
    assert float(np.abs(p_hat - P_WORKED).max()) <= EPS_Q


def test_padding_illustration_a16() -> None:
    """§6 step 6: A = 16, the 40 B slice gets 8 pad bytes, a 1-site slice ends the blob at 80."""
    p = np.r_[P_WORKED, 1.0]
    offsets = np.array([0, 3, 4])
    layout = _encode_all(p, offsets, alignment_bytes=16)
    assert len(layout.blob) == 80
    assert layout.offsets.tolist() == [0, 48]
    assert layout.lengths.tolist() == [40, 24]
    assert layout.blob[:40].hex() == PAYLOAD_WORKED
    assert layout.blob[40:48] == bytes(8)
    assert layout.blob[48:72].hex() == "01000000200000000000000000000000ffffffff" + ("00000000")
    assert layout.blob[72:80] == bytes(8)  # trailing pad after the last slice too
    assert layout.checksums[0] == CHECKSUM_WORKED
    assert layout.sha256 == hashlib.sha256(layout.blob).hexdigest()


def test_padding_included_in_length_and_pad_byte() -> None:
    p = np.r_[P_WORKED, 1.0]
    offsets = np.array([0, 3, 4])
    layout = _encode_all(
        p, offsets, alignment_bytes=16, pad_byte=0xAB, pad_included_in_slice_length=True
    )
    assert layout.offsets.tolist() == [0, 48]  # same offsets under either rule
    assert layout.lengths.tolist() == [48, 32]
    assert layout.payload_lengths.tolist() == [40, 24]
    assert layout.blob[40:48] == b"\xab" * 8
    # Checksums stay over the unpadded payload.
    assert layout.checksums[0] == CHECKSUM_WORKED


def test_alignment_8_never_pads() -> None:
    vectors = _hashed_vectors(30)
    p = np.concatenate(vectors)
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in vectors])))
    layout = _encode_all(p, offsets)
    assert len(layout.blob) == sum(16 + 8 * len(v) for v in vectors)
    assert all(o % 8 == 0 for o in layout.offsets.tolist())


def test_endianness_big_and_little_are_byteswapped_words() -> None:
    grid = al.grid_masses(P_WORKED, _one(3), 24, residual="signed")
    prob, alias = al.walker_vose(grid.masses, _one(3), 24, tiny_negative_epsilon=1e-15)
    q = al.encode_prob_q(prob, 32)
    little = al.encode_slice(q, alias, prob_qbits=32, endianness="little")
    big = al.encode_slice(q, alias, prob_qbits=32, endianness="big")
    assert big[:4] == b"\x00\x00\x00\x03" and big[16:20] == b"\xff\xff\xff\xff"
    words = np.frombuffer(little, dtype="<u4")
    assert big == words.astype(">u4").tobytes()
    assert al.parse_slice(big, endianness="big").prob_q.tolist() == q.tolist()
    with pytest.raises(al.AliasSliceError):
        al.parse_slice(big, endianness="little")  # K = 0x03000000 does not fit 40 bytes


# --- grid laws ------------------------------------------------------------------------------


def test_rint_ties_to_even() -> None:
    # G = 4: x = (0.5, 1.5, 2.0) → (0, 2, 2); Σ = 4 so no adjustment.
    grid = al.grid_masses(np.array([0.125, 0.375, 0.5]), _one(3), 2, residual="signed")
    assert grid.masses.tolist() == [0, 2, 2]
    assert grid.delta.tolist() == [0]


@pytest.mark.parametrize(
    ("x", "s2_expected", "s1_expected"),
    [
        # Δ = +1 (fractions .375 ×3, .875): S2 ranks the signed residual (.375 > −.125) and
        # gives index 0; S1 ranks x − floor(x) and gives index 3 (s2 §4.1 note).
        ((3.375, 4.375, 5.375, 2.875), [4, 4, 5, 3], [3, 4, 5, 4]),
        # Δ = −1: S2 takes index 0 (residual −.375 lowest, first index); S1 index 3 (.125).
        ((3.625, 4.625, 5.625, 2.125), [3, 5, 6, 2], [4, 5, 6, 1]),
    ],
)
def test_plus_minus_one_adjustment_s2_vs_s1(
    x: tuple[float, ...], s2_expected: list[int], s1_expected: list[int]
) -> None:
    p = np.array(x) / 16.0
    s2 = al.grid_masses(p, _one(4), 4, residual="signed")
    s1 = al.grid_masses(p, _one(4), 4, residual="floor_fraction", skip_nonpositive=True)
    assert s2.masses.tolist() == s2_expected
    assert s1.masses.tolist() == s1_expected
    assert int(s2.masses.sum()) == int(s1.masses.sum()) == 16


def test_s1_law_skips_nonpositive_masses() -> None:
    # Σ rint = 17 (Δ = −1); the lowest fraction (.125) sits on m = 0, which S1 skips.
    p = np.array([0.125, 5.625, 5.625, 4.625]) / 16.0
    skip = al.grid_masses(p, _one(4), 4, residual="floor_fraction", skip_nonpositive=True)
    assert skip.masses.tolist() == [0, 5, 6, 5]
    no_skip = al.grid_masses(p, _one(4), 4, residual="floor_fraction")
    assert no_skip.masses.tolist() == [-1, 6, 6, 5]


def test_unassigned_when_the_ranked_list_runs_out() -> None:
    grid = al.grid_masses(np.array([0.1, 0.1]), _one(2), 4, residual="signed")
    assert grid.delta.tolist() == [12]
    assert grid.unassigned.tolist() == [10]


def test_one_hot_shortcut_uses_first_maximum() -> None:
    p = np.array([5e-14, 1.0 - 1e-13, 5e-14])
    grid = al.grid_masses(p, _one(3), 24, residual="signed", one_hot_epsilon=1e-12)
    assert grid.masses.tolist() == [0, G24, 0]
    tie = al.grid_masses(np.array([1.0, 1.0]), _one(2), 24, residual="signed", one_hot_epsilon=0.1)
    assert tie.masses.tolist()[0] == G24


def test_grid_is_segmentwise() -> None:
    vectors = _hashed_vectors(25)
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in vectors])))
    together = al.grid_masses(np.concatenate(vectors), offsets, 24, residual="signed")
    apart = [al.grid_masses(v, _one(len(v)), 24, residual="signed").masses for v in vectors]
    assert together.masses.tolist() == np.concatenate(apart).tolist()


# --- worklists ------------------------------------------------------------------------------


def _reference_walker(masses: list[int], bits: int, tau: float) -> tuple[list, list]:
    """The §4.2 text, literally, one merchant."""
    k = len(masses)
    if k == 1:
        return [1.0], [0]
    s = [(m / float(1 << bits)) * k for m in masses]
    theta = 1.0 - tau
    small = [i for i in range(k) if s[i] < theta]
    large = [i for i in range(k) if s[i] >= theta]
    heapq.heapify(small)
    heapq.heapify(large)
    prob, alias = [0.0] * k, [0] * k
    while small and large:
        i, big = heapq.heappop(small), heapq.heappop(large)
        prob[i], alias[i] = s[i], big
        s[big] = s[big] - (1.0 - prob[i])
        heapq.heappush(small if s[big] < theta else large, big)
    for i in small + large:
        prob[i], alias[i] = 1.0, i
    return prob, alias


def test_walker_vose_matches_reference_and_reinserts_by_index() -> None:
    # s ≈ (0.25, 1.5, 0.5, 1.2, 1.55): index 1 drops into small and is popped before 2
    # (a FIFO queue would pop 2 first and give alias (1, 4, 3, 4, 4)).
    s = np.array([0.25, 1.5, 0.5, 1.2, 1.55])
    masses = np.rint(s / 5 * (1 << 20)).astype(np.int64)
    masses[-1] += (1 << 20) - masses.sum()
    prob, alias = al.walker_vose(masses, _one(5), 20, tiny_negative_epsilon=1e-15)
    assert alias.tolist() == [1, 3, 4, 4, 4]
    ref_prob, ref_alias = _reference_walker(masses.tolist(), 20, 1e-15)
    assert prob.tolist() == ref_prob and alias.tolist() == ref_alias

    vectors = _hashed_vectors(60)
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in vectors])))
    grid = al.grid_masses(np.concatenate(vectors), offsets, 24, residual="signed")
    prob, alias = al.walker_vose(grid.masses, offsets, 24, tiny_negative_epsilon=1e-15)
    for a, b in itertools.pairwise(offsets.tolist()):
        ref_prob, ref_alias = _reference_walker(grid.masses[a:b].tolist(), 24, 1e-15)
        assert prob[a:b].tolist() == ref_prob
        assert alias[a:b].tolist() == ref_alias


def test_q_encoding_clamps() -> None:
    q = al.encode_prob_q(np.array([0.0, 1.0, 0.5, 1e-12]), 32)
    assert q.tolist() == [1, 0xFFFFFFFF, 0x80000000, 1]
    assert al.encode_prob_q(np.array([1.0, 0.0]), 24).tolist() == [(1 << 24) - 1, 1]


# --- round trip and decode ------------------------------------------------------------------


def test_decode_of_encode_is_within_quantisation_epsilon() -> None:
    vectors = _hashed_vectors(200)
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in vectors])))
    p = np.concatenate(vectors)
    layout = _encode_all(p, offsets)
    view = memoryview(layout.blob)
    decoded = []
    for m, vec in enumerate(vectors):
        off, n = int(layout.offsets[m]), int(layout.lengths[m])
        payload = view[off : off + n]
        assert hashlib.sha256(payload).hexdigest() == layout.checksums[m]
        parsed = al.parse_slice(payload, endianness="little")
        assert parsed.n_sites == len(vec)
        p_hat = parsed.probabilities()
        assert float(np.abs(p_hat - vec).max()) <= EPS_Q
        assert abs(float(p_hat.sum()) - 1.0) <= EPS_Q
        decoded.append(p_hat)
    # The segmented decode (S2's build check) equals the per-slice decode (any reader).
    grid = al.grid_masses(p, offsets, 24, residual="signed", one_hot_epsilon=1e-12)
    prob, alias = al.walker_vose(grid.masses, offsets, 24, tiny_negative_epsilon=1e-15)
    seg = al.decode_probabilities_segments(al.encode_prob_q(prob, 32), alias, offsets, 32)
    assert seg.tolist() == np.concatenate(decoded).tolist()


def test_parse_slice_rejects_corruption() -> None:
    good = bytearray(bytes.fromhex(PAYLOAD_WORKED))
    bad_alias = bytearray(good)
    bad_alias[20] = 7  # alias[0] = 7 >= K
    bad_reserved = bytearray(good)
    bad_reserved[8] = 1
    for data in (bad_alias, bad_reserved, good[:36], good[:8]):
        with pytest.raises(al.AliasSliceError):
            al.parse_slice(bytes(data), endianness="little")


def test_alias_pick_follows_the_decode_law() -> None:
    q = np.array([0xFFFFFFFF, 0x2CA67E00, 0x6CF31B00], dtype=np.uint32)
    alias = np.array([0, 0, 0])
    # u in column j's lower part keeps j; in its upper part goes to alias[j] = 0.
    u = np.array([0.1, 1 / 3 + 0.01, 1 / 3 + 0.3, 2 / 3 + 0.01, 2 / 3 + 0.3, 1 - 2**-53])
    assert al.alias_pick(q, alias, 32, u).tolist() == [0, 1, 0, 2, 0, 0]
    # Frequencies over a fine uniform grid reproduce p̂.
    grid_u = (np.arange(300_000) + 0.5) / 300_000
    counts = np.bincount(al.alias_pick(q, alias, 32, grid_u), minlength=3) / grid_u.size
    assert np.abs(counts - al.decode_probabilities(q, alias, 32)).max() < 1e-4


def test_segment_sum_is_numpy_sum_per_segment() -> None:
    vectors = _hashed_vectors(80)
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in vectors])))
    sums = al.segment_sum(np.concatenate(vectors), offsets)
    assert sums.tolist() == [np.asarray(v).sum() for v in vectors]
    assert al.segment_first_argmax(
        np.array([1.0, 3.0, 3.0, 2.0, 2.0]), np.array([0, 3, 5])
    ).tolist() == [1, 3]
