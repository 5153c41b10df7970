"""S3 day effects: the §6.5 toy universe, determinism, error codes and the I/O runner."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from segment2b.errors import SegmentError
from segment2b.policy.models import DayEffectPolicyV1, DayRange
from segment2b.policy.store import DEFAULT_PACK, load_pack, policy_self_digest
from segment2b.states import s3_day_effects as s3mod
from segment2b.states.s0_gate import run_s0
from segment2b.states.s3_day_effects import (
    aux_u,
    build_s3,
    check_policy,
    classify_policy_error,
    run_s3,
    segment_of,
)
from segment2b.storage.canonical import canonical_json
from segment2b.storage.digests import folder_digest
from segment2b.storage.publish import publish_folder
from segment2b.storage.tables import conform, write_parquet_part
from segment2b_tests.fixtures import TinyRun, build_tiny_run, tiny_frames

MF = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
CREATED = "2026-01-01T00:00:00.000000Z"
KEYS = ["merchant_id", "legal_country_iso", "site_order"]
REL = 1e-12
PREFIXES = ("Europe", "America", "Asia", "Africa", "Pacific", "Australia")

# §6.5 table: (out0, u, z, scalar gamma, v2 sigma, v2 w, v2 gamma).
TOY = [
    (0xBCAC096CB26FEF71, 0.7370000734685502, 0.6341240740501295, 1.071323595213431,
     0.09541890953354437, -0.008212611574082358, 1.0489004572649532),
    (0xBD804B9D23462930, 0.7402388819348508, 0.6440820400457246, 1.0726045448719648,
     0.09636365121209432, -0.008212611574082358, 1.0504414546869252),
    (0x26FA2ADAE16FCDA6, 0.1522547516228194, -1.0268109277655522, 0.8777290681957532,
     0.09541890953354437, -0.0006597207950039368, 0.9019562314683843),
    (0x8A899A3570989811, 0.5411621456592876, 0.10336195152082242, 1.0052169955578494,
     0.09636365121209432, -0.0006597207950039368, 1.004668501266324),
    (0xC7751FCA42090FE8, 0.7791309231561494, 0.7692613879938327, 1.0888383201237875,
     0.09831131036010558, 0.008546903001944335, 1.082573894294778),
    (0x6C212D654C2217B0, 0.4223812458332151, -0.19580538918094606, 0.9697697113003714,
     0.09831131036010558, -0.0012566230841127106, 0.9749792752710876),
]  # fmt: skip
TOY_KEYS = [
    (1001, "2026-01-01", "America/New_York"),
    (1001, "2026-01-01", "Europe/London"),
    (1001, "2026-01-02", "America/New_York"),
    (1001, "2026-01-02", "Europe/London"),
    (2002, "2026-01-01", "Asia/Tokyo"),
    (2002, "2026-01-02", "Asia/Tokyo"),
]
KEY = 0xD3F5981CEFFDB38D
HI0 = 0x69CA4073E7E90336
LO0 = 0x8DB3FDEF1C98F5D3


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * abs(b)


def pack_policy(pack: Path = DEFAULT_PACK) -> DayEffectPolicyV1:
    model = load_pack(pack)["day_effect_policy_v1"].model
    assert isinstance(model, DayEffectPolicyV1)
    return model


def toy_policy(*, v2: bool) -> DayEffectPolicyV1:
    pol = pack_policy().model_copy(
        update={"day_range": DayRange(start_day=dt.date(2026, 1, 1), end_day=dt.date(2026, 1, 2))}
    )
    return pol if v2 else pol.model_copy(update={"sigma_gamma_policy_v2": None})


def toy_inputs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Merchant 1001: 10 sites (mid) in New York and London; 2002: 3 sites (small) in Tokyo."""
    rows = (
        [(1001, "US", i, "America/New_York") for i in range(1, 6)]
        + [(1001, "GB", i, "Europe/London") for i in range(1, 6)]
        + [(2002, "JP", i, "Asia/Tokyo") for i in range(1, 4)]
    )
    tz = pl.DataFrame(rows, schema=[*KEYS, "tzid"], orient="row").with_columns(
        pl.col("merchant_id").cast(pl.UInt64), pl.col("site_order").cast(pl.Int32)
    )
    return tz, tz.select(KEYS)


def synthetic_world(
    n_merchants: int = 1238, groups_mean: float = 2.5, seed: int = 7
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A synthetic site → tzid world and S1 weights (Dirichlet per merchant, sum 1).

    Country is derived from the tzid, so each (merchant, country, site_order) key has one tzid.
    The last merchant id is above 2**63 to catch int64 casts.
    """
    rng = np.random.default_rng(seed)
    tz_names = [f"{PREFIXES[i % 6]}/City{i:02d}" for i in range(90)]
    mids = np.arange(1, n_merchants + 1, dtype=np.uint64) * np.uint64(1009)
    mids[-1] = np.uint64(2**63 + 17)
    cols: dict[str, list[Any]] = {c: [] for c in [*KEYS, "tzid", "p_weight"]}
    for m in mids.tolist():
        n_sites = int(2 + np.floor(rng.lognormal(np.log(14), 0.9)))
        n_g = min(n_sites, 1 + int(rng.poisson(groups_mean - 1)))
        tzs = sorted(rng.choice(90, size=n_g, replace=False).tolist())
        extra = rng.choice(n_g, size=n_sites - n_g, p=rng.dirichlet(np.full(n_g, 0.6)))
        assign = np.concatenate([np.arange(n_g), extra])
        w = rng.dirichlet(np.full(n_sites, 0.8))
        w = w / w.sum()
        orders: dict[str, int] = {}
        for s in range(n_sites):
            tz = tzs[int(assign[s])]
            iso = "C" + chr(65 + tz % 26)
            orders[iso] = orders.get(iso, 0) + 1
            for c, v in zip(cols, (m, iso, orders[iso], tz_names[tz], float(w[s])), strict=True):
                cols[c].append(v)
    frame = pl.DataFrame(cols, schema_overrides={"merchant_id": pl.UInt64, "site_order": pl.Int32})
    return frame.select([*KEYS, "tzid"]), frame.select([*KEYS, "p_weight"])


def small_world_digest(out: Path) -> str:
    """Build S3 for a 40-merchant synthetic world, write its parts, return the H2 digest."""
    tz, s1 = synthetic_world(40, seed=3)
    build = build_s3(tz, s1, pack_policy(), manifest_fingerprint=MF, seed=7, created_utc=CREATED)
    out.mkdir(parents=True, exist_ok=True)
    s3mod._write_parts(build.frame, out)
    return folder_digest(out)


# --- §6.5 toy universe ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_v2() -> s3mod.S3Build:
    tz, s1 = toy_inputs()
    return build_s3(
        tz, s1, toy_policy(v2=True), manifest_fingerprint=MF, seed=42, created_utc=CREATED
    )


@pytest.fixture(scope="module")
def toy_v1() -> s3mod.S3Build:
    tz, s1 = toy_inputs()
    return build_s3(
        tz, s1, toy_policy(v2=False), manifest_fingerprint=MF, seed=42, created_utc=CREATED
    )


def test_key_and_base_counter(toy_v2: s3mod.S3Build) -> None:
    st = toy_v2.stream
    assert st.master_digest.hex() == (
        "6ece84dee130e66993c97d3f08d4fa352e93306bdb9a5312efd6546669dd51a5"
    )
    assert st.stream_digest.hex() == (
        "1fe09c0d534e6ae95e6e40f42a4f82af69ca4073e7e903368db3fdef1c98f5d3"
    )
    assert (st.key, st.counter_hi, st.counter_lo) == (KEY, HI0, LO0)


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_toy_rows_order_counters_and_out0_bit_exact(
    mode: str, toy_v1: s3mod.S3Build, toy_v2: s3mod.S3Build
) -> None:
    build = toy_v2 if mode == "v2" else toy_v1
    frame = build.frame
    keys = [
        (r[0], r[1].isoformat(), r[2])
        for r in frame.select(["merchant_id", "utc_day", "tz_group_id"]).iter_rows()
    ]
    assert keys == TOY_KEYS
    base = (HI0 << 64) | LO0
    for i, (hi, lo) in enumerate(frame.select("rng_counter_hi", "rng_counter_lo").iter_rows()):
        assert (hi << 64) | lo == base + i  # counter = base + rank
    assert frame["rng_counter_lo"][5] & 0xFFFF == 0xF5D8
    assert build.draws["out0"].to_list() == [row[0] for row in TOY]
    assert frame["rng_stream_id"].unique().to_list() == ["2B.day_effects.gamma"]
    assert frame["created_utc"].unique().to_list() == [CREATED]


def test_toy_scalar_mode_floats(toy_v1: s3mod.S3Build) -> None:
    for i, row in enumerate(TOY):
        assert _close(toy_v1.draws["u"][i], row[1])
        assert _close(toy_v1.draws["z"][i], row[2])
        assert _close(toy_v1.frame["gamma"][i], row[3])
        assert toy_v1.frame["sigma_gamma"][i] == 0.12
        assert toy_v1.draws["w"][i] == 0.0
    assert _close(toy_v1.frame["log_gamma"][0], 0.06889488888601554)
    assert toy_v1.report["policy"]["sigma_policy_mode"] == "scalar_v1"
    assert toy_v1.report["rng_accounting"]["gamma_clipped_rows"] == 0


def test_toy_v2_mode_floats(toy_v2: s3mod.S3Build) -> None:
    for i, row in enumerate(TOY):
        assert _close(toy_v2.draws["u"][i], row[1])
        assert _close(toy_v2.draws["z"][i], row[2])
        assert _close(toy_v2.frame["sigma_gamma"][i], row[4])
        assert _close(toy_v2.draws["w"][i], row[5])
        assert _close(toy_v2.frame["gamma"][i], row[6])
    assert _close(toy_v2.frame["log_gamma"][0], 0.04774243193246418)
    assert toy_v2.report["rng_accounting"]["gamma_clipped_rows"] == 0
    assert toy_v2.report["policy"]["sigma_policy_mode"] == "sigma_gamma_policy_v2"


def test_toy_v2_profiles(toy_v2: s3mod.S3Build) -> None:
    prof = {r["merchant_id"]: r for r in toy_v2.profiles.to_dicts()}
    expected = {
        1001: ("mid", 10, 0.09, 0.8107061010412799, 1.0497129761666049, 0.01, 2.6267736743917207),
        2002: ("small", 3, 0.095, 0.783181177572142, 1.0453089884115427, 0.012, 5.939297288056432),
    }
    for m, (seg, count, base, ju, jm, amp, phase) in expected.items():
        p = prof[m]
        assert (p["segment"], p["site_count"], p["base_sigma"]) == (seg, count, base)
        assert _close(p["jitter_u"], ju) and _close(p["jitter_mult"], jm)
        assert p["weekly_amp"] == amp and _close(p["weekly_phase"], phase)
    assert aux_u(MF, 42, "2B.S3.sigma_jitter", 1001) == 0.8107061010412799
    # Weekday phases: Thu 2026-01-01 and Fri 2026-01-02.
    assert _close(s3mod.TWO_PI * (3 / 7), 2.6927937030769655)
    assert _close(s3mod.TWO_PI * (4 / 7), 3.5903916041026207)


def test_site_count_is_real_site_count_across_countries() -> None:
    """README decision 3: 2 countries x 5 sites = 10 sites (mid), not 5 distinct site_orders."""
    tz, s1 = toy_inputs()
    build = build_s3(
        tz, s1, toy_policy(v2=True), manifest_fingerprint=MF, seed=42, created_utc=CREATED
    )
    assert build.profiles.filter(pl.col("merchant_id") == 1001)["segment"][0] == "mid"
    assert [segment_of(n) for n in (1, 8, 9, 24, 25)] == ["small", "small", "mid", "mid", "large"]


def test_exact_duplicate_site_timezones_rows_are_tolerated() -> None:
    tz, s1 = toy_inputs()
    doubled = pl.concat([tz, tz.head(2)])
    a = build_s3(
        doubled, s1, toy_policy(v2=True), manifest_fingerprint=MF, seed=42, created_utc=CREATED
    )
    b = build_s3(tz, s1, toy_policy(v2=True), manifest_fingerprint=MF, seed=42, created_utc=CREATED)
    assert a.frame.equals(b.frame)


# --- determinism -------------------------------------------------------------------------------


def test_counters_are_base_plus_rank_on_a_larger_grid() -> None:
    tz, s1 = synthetic_world(25, seed=5)
    build = build_s3(tz, s1, pack_policy(), manifest_fingerprint=MF, seed=9, created_utc=CREATED)
    hi = build.frame["rng_counter_hi"].to_list()
    lo = build.frame["rng_counter_lo"].to_list()
    base = build.stream.base_counter
    assert [(h << 64 | low) - base for h, low in zip(hi, lo, strict=True)] == list(range(len(hi)))
    pk = build.frame.select(["merchant_id", "utc_day", "tz_group_id"])
    assert pk.equals(pk.sort(["merchant_id", "utc_day", "tz_group_id"]))
    assert pk.n_unique() == pk.height
    assert build.frame.height == build.report["rng_accounting"]["rows_expected"]


def test_identical_bytes_across_runs_and_processes(tmp_path: Path) -> None:
    first = small_world_digest(tmp_path / "a")
    second = small_world_digest(tmp_path / "b")
    assert first == second
    code = (
        "import sys; from pathlib import Path; "
        "from segment2b_tests.states.test_s3_day_effects import small_world_digest; "
        f"sys.stdout.write(small_world_digest(Path({str(tmp_path / 'c')!r})))"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == first
    assert [p.read_bytes() for p in sorted((tmp_path / "a").iterdir())] == [
        p.read_bytes() for p in sorted((tmp_path / "c").iterdir())
    ]


def test_parts_hold_at_most_batch_rows_in_pk_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_v2: s3mod.S3Build
) -> None:
    monkeypatch.setattr(s3mod, "BATCH_ROWS", 4)
    s3mod._write_parts(toy_v2.frame, tmp_path)
    parts = sorted(tmp_path.glob("*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet"]
    back = pl.concat([pl.read_parquet(p) for p in parts])
    assert back.equals(toy_v2.frame)


# --- bad inputs and policies -----------------------------------------------------------------


def _code(fn: Callable[[], object]) -> SegmentError:
    with pytest.raises(SegmentError) as exc:
        fn()
    return exc.value


def _build(tz: pl.DataFrame, s1: pl.DataFrame, pol: DayEffectPolicyV1) -> s3mod.S3Build:
    return build_s3(tz, s1, pol, manifest_fingerprint=MF, seed=42, created_utc=CREATED)


def test_day_range_start_after_end_is_033() -> None:
    tz, s1 = toy_inputs()
    bad = toy_policy(v2=True).model_copy(
        update={
            "day_range": DayRange.model_construct(
                start_day=dt.date(2026, 3, 1), end_day=dt.date(2026, 1, 1)
            )
        }
    )
    err = _code(lambda: _build(tz, s1, bad))
    assert err.code == "2B-S3-033" and err.dataset == "day_effect_policy_v1"
    bad_text = toy_policy(v2=True).model_copy(
        update={"day_range": DayRange.model_construct(start_day="2026-13-01", end_day="x")}
    )
    assert _code(lambda: check_policy(bad_text)).code == "2B-S3-033"


def test_s1_key_without_site_timezones_row_is_040() -> None:
    tz, s1 = toy_inputs()
    extra = pl.DataFrame(
        {"merchant_id": [2002], "legal_country_iso": ["KR"], "site_order": [1]},
        schema={"merchant_id": pl.UInt64, "legal_country_iso": pl.String, "site_order": pl.Int32},
    )
    err = _code(lambda: _build(tz, pl.concat([s1, extra]), toy_policy(v2=True)))
    assert err.code == "2B-S3-040" and err.dataset == "site_timezones"
    assert "KR" in (err.key or "") and err.context["count"] == 1


def test_key_with_two_tzids_is_041() -> None:
    tz, s1 = toy_inputs()
    clash = tz.head(1).with_columns(tzid=pl.lit("America/Chicago"))
    err = _code(lambda: _build(pl.concat([tz, clash]), s1, toy_policy(v2=True)))
    assert err.code == "2B-S3-041" and "1001" in (err.key or "")


def test_sigma_bounds_inverted_is_032() -> None:
    tz, s1 = toy_inputs()
    pol = toy_policy(v2=True)
    assert pol.sigma_gamma_policy_v2 is not None
    v2 = pol.sigma_gamma_policy_v2.model_copy(update={"sigma_min": 0.2, "sigma_max": 0.1})
    err = _code(lambda: _build(tz, s1, pol.model_copy(update={"sigma_gamma_policy_v2": v2})))
    assert err.code == "2B-S3-032" and "sigma_max < sigma_min" in str(err)


@pytest.mark.parametrize(
    ("update", "code"),
    [
        ({"record_fields": ["gamma"]}, "2B-S3-032"),
        ({"draws_per_row": 2}, "2B-S3-032"),
        ({"sigma_gamma": 0.0}, "2B-S3-032"),
        ({"rng_engine": "mt19937"}, "2B-S3-060"),
    ],
)
def test_policy_minima_codes(update: dict[str, Any], code: str) -> None:
    tz, s1 = toy_inputs()
    assert _code(lambda: _build(tz, s1, toy_policy(v2=True).model_copy(update=update))).code == code


def test_bad_fingerprint_is_032() -> None:
    tz, s1 = toy_inputs()
    err = _code(
        lambda: build_s3(
            tz, s1, toy_policy(v2=True), manifest_fingerprint="abc", seed=1, created_utc=CREATED
        )
    )
    assert err.code == "2B-S3-032"


def _doc() -> dict[str, Any]:
    return json.loads((DEFAULT_PACK / "day_effect_policy_v1.json").read_bytes())


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d["day_range"].update(start_day="2026-04-01"), "033"),
        (lambda d: d["day_range"].update(start_day="not-a-date"), "033"),
        (lambda d: d["sigma_gamma_policy_v2"].update(sigma_min=0.3), "032"),
        (lambda d: d["sigma_gamma_policy_v2"]["gamma_clip"].update(min=2.0), "032"),
        (lambda d: d["sigma_gamma_policy_v2"]["sigma_base_by_segment"].pop("default"), "032"),
        (
            lambda d: d["sigma_gamma_policy_v2"]["sigma_jitter_by_merchant"].update(amplitude=2),
            "032",
        ),
        (lambda d: d.update(draws_per_row=3), "032"),
        (lambda d: d.update(sigma_gamma=-1.0), "032"),
        (lambda d: d.update(rng_engine="pcg64"), "060"),
        (lambda d: d.update(surprise=True), "031"),
        (lambda d: d.pop("rng_derivation"), "031"),
        (lambda d: (d.update(surprise=1), d["day_range"].update(start_day="2027-01-01")), "031"),
    ],
)
def test_classify_policy_error(mutate: Callable[[dict[str, Any]], object], code: str) -> None:
    doc = _doc()
    mutate(doc)
    found = classify_policy_error(doc)
    assert found is not None and found[0] == code
    assert classify_policy_error(_doc()) is None


# --- runner ----------------------------------------------------------------------------------


def write_s1(run: TinyRun, *, created_utc: str | None = None) -> pl.DataFrame:
    """Publish a uniform-weight ``s1_site_weights`` table for the tiny world (no S1 module)."""
    _, tz, _, _ = tiny_frames()
    tokens = {"seed": str(run.seed), "manifest_fingerprint": run.manifest_fingerprint}
    receipt = json.loads(run.home.path("s0_gate_receipt_2B", tokens).read_bytes())
    counts = tz.group_by("merchant_id").len()
    frame = (
        tz.select(KEYS)
        .join(counts, on="merchant_id")
        .with_columns(
            p_weight=1.0 / pl.col("len"),
            weight_source=pl.lit("uniform"),
            quantised_bits=pl.lit(24, dtype=pl.Int32),
            floor_applied=pl.lit(False),
            created_utc=pl.lit(created_utc or receipt["verified_at_utc"]),
        )
        .sort(KEYS)
    )
    table = conform(frame, "schemas.2B.yaml#/plan/s1_site_weights")
    publish_folder(
        run.home,
        run.home.path("s1_site_weights", tokens),
        lambda stage: write_parquet_part(table, stage),
        prefix="2B-S1",
        state="s1_test",
        dataset_id="s1_site_weights",
    )
    return table


def reseal_policy(run: TinyRun, policy_id: str, mutate: Callable[[dict[str, Any]], object]) -> None:
    """Edit a sealed policy and patch the inventory digest, as if S0 had accepted the bytes."""
    path = run.home.path(policy_id)
    doc = json.loads(path.read_bytes())
    mutate(doc)
    doc["sha256_hex"] = policy_self_digest(doc)
    path.write_bytes(json.dumps(doc, indent=2).encode())
    tokens = {"seed": str(run.seed), "manifest_fingerprint": run.manifest_fingerprint}
    inv_path = run.home.path("sealed_inputs_2B", tokens)
    inventory = json.loads(inv_path.read_bytes())
    for row in inventory:
        if row["asset_id"] == policy_id:
            row["sha256_hex"] = hashlib.sha256(path.read_bytes()).hexdigest()
    inv_path.write_bytes(canonical_json(inventory))


@pytest.fixture
def sealed(tmp_path: Path) -> TinyRun:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    write_s1(run)
    return run


def _run(run: TinyRun) -> Any:
    return run_s3(run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint)


def test_run_s3_publishes_table_and_report(sealed: TinyRun) -> None:
    out = _run(sealed)
    tokens = {"seed": str(sealed.seed), "manifest_fingerprint": sealed.manifest_fingerprint}
    folder = sealed.home.path("s3_day_effects", tokens)
    assert [p.name for p in sorted(folder.iterdir())] == ["part-00000.parquet"]
    table = pl.read_parquet(folder / "part-00000.parquet")
    assert table.equals(out.frame)
    assert table.height == 5 * 90  # 5 (merchant, tzid) groups x 90 policy days
    assert table["created_utc"].unique().to_list() == ["2026-01-01T00:00:00.000000Z"]
    report = json.loads(sealed.home.path("s3_run_report", tokens).read_bytes())
    assert report["component"] == "2B.S3" and report["summary"]["overall_status"] == "PASS"
    acc = report["rng_accounting"]
    assert acc["rows_written"] == acc["draws_total"] == acc["rows_expected"] == 450
    assert acc["nonpositive_gamma_rows"] == 0 and acc["gamma_clipped_rows"] == 0
    assert acc["max_abs_log_gamma"] > 0
    assert [v["id"] for v in report["validators"]] == [f"V-{i:02d}" for i in range(1, 22)]
    assert report["inputs_summary"]["merchants_total"] == 3
    assert report["inputs_summary"]["tz_groups_total"] == 5
    assert report["policy"]["sigma_policy_mode"] == "sigma_gamma_policy_v2"
    assert len(report["samples"]["rows"]) == 20
    assert report["samples"]["rows"][0]["sigma_source"].startswith("sigma_gamma_policy_v2:")
    assert report["publish"]["target_path"].endswith(
        f"seed={sealed.seed}/manifest_fingerprint={sealed.manifest_fingerprint}/"
    )


def test_run_s3_rerun_is_idempotent(sealed: TinyRun) -> None:
    first = _run(sealed)
    again = _run(sealed)
    assert first.published[0].digest == again.published[0].digest
    assert again.published[0].outcome == "idempotent"
    assert again.report["publish"]["write_once_verified"] is True


def test_run_s3_baseline_pack_is_scalar(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path, pack=DEFAULT_PACK / "baseline")
    run_s0(run.home, run.run_id)
    write_s1(run)
    out = _run(run)
    assert out.frame["sigma_gamma"].unique().to_list() == [0.12]
    assert out.report["policy"]["sigma_min"] == out.report["policy"]["sigma_max"] == 0.12
    assert out.report["policy"]["gamma_clip_min"] == 0.0


def test_missing_s1_is_020(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    err = _code(lambda: _run(run))
    assert err.code == "2B-S3-020" and err.dataset == "s1_site_weights"


def test_missing_receipt_is_001(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path)
    assert _code(lambda: _run(run)).code == "2B-S3-001"


def test_stale_s1_created_utc_is_086(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    write_s1(run, created_utc="2025-12-31T00:00:00.000000Z")
    err = _code(lambda: _run(run))
    assert err.code == "2B-S3-086" and err.dataset == "s1_site_weights"


def test_policy_edited_after_seal_is_070(sealed: TinyRun) -> None:
    path = sealed.home.path("day_effect_policy_v1")
    path.write_bytes(path.read_bytes() + b"\n")
    err = _code(lambda: _run(sealed))
    assert err.code == "2B-S3-070" and err.dataset == "day_effect_policy_v1"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d["day_range"].update(start_day="2026-04-01"), "2B-S3-033"),
        (lambda d: d["sigma_gamma_policy_v2"].update(sigma_min=0.3, sigma_max=0.1), "2B-S3-032"),
        (lambda d: d.update(rng_engine="pcg64"), "2B-S3-060"),
        (lambda d: d.update(record_fields=["gamma"]), "2B-S3-032"),
        (lambda d: d.update(unexpected=1), "2B-S3-031"),
    ],
)
def test_runner_surfaces_policy_codes(
    sealed: TinyRun, mutate: Callable[[dict[str, Any]], object], code: str
) -> None:
    reseal_policy(sealed, "day_effect_policy_v1", mutate)
    err = _code(lambda: _run(sealed))
    assert err.code == code and err.dataset == "day_effect_policy_v1"
