"""S4 group weights: base shares, renormalisation, regularizer, audit, codes and the runner."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from segment2b.core.group_mix import RegularizeResult, regularize
from segment2b.errors import SegmentError
from segment2b.policy.models import GroupMixRegularizerV1
from segment2b.policy.store import DEFAULT_PACK, load_pack
from segment2b.states import s4_group_weights as s4mod
from segment2b.states.s0_gate import run_s0
from segment2b.states.s3_day_effects import build_s3, run_s3
from segment2b.states.s4_group_weights import build_s4, run_s4
from segment2b.storage.digests import folder_digest
from segment2b_tests.fixtures import TinyRun, build_tiny_run
from segment2b_tests.states.test_s3_day_effects import (
    MF,
    pack_policy,
    synthetic_world,
    write_s1,
)

CREATED = "2026-01-01T00:00:00.000000Z"
KEYS = ["merchant_id", "legal_country_iso", "site_order"]
DAYS = [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]
# (merchant, country, site_order, tzid, p_weight)
SITES = [
    (11, "FR", 1, "Europe/Paris", 0.5),
    (11, "FR", 2, "Europe/Paris", 0.2),
    (11, "GB", 1, "Europe/London", 0.2),
    (11, "US", 1, "America/New_York", 0.1),
    (22, "US", 1, "America/New_York", 0.97),
    (22, "US", 2, "America/Chicago", 0.03),
    (33, "JP", 1, "Asia/Tokyo", 0.6),
    (33, "JP", 2, "Asia/Tokyo", 0.4),
]
GROUPS = {
    11: ["America/New_York", "Europe/London", "Europe/Paris"],
    22: ["America/Chicago", "America/New_York"],
    33: ["Asia/Tokyo"],
}


def reg_policy(**update: Any) -> GroupMixRegularizerV1:
    model = load_pack(DEFAULT_PACK)["group_mix_regularizer_v1"].model
    assert isinstance(model, GroupMixRegularizerV1)
    return model.model_copy(update=update)


SPEC_CURRENT = {
    "max_p_group_soft_cap": 0.68,
    "regularization_strength": 0.52,
    "entropy_floor": 0.62,
}


def inputs() -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = pl.DataFrame(SITES, schema=[*KEYS, "tzid", "p_weight"], orient="row").with_columns(
        pl.col("merchant_id").cast(pl.UInt64), pl.col("site_order").cast(pl.Int32)
    )
    return frame.select([*KEYS, "p_weight"]), frame.select([*KEYS, "tzid"])


def s3_frame(gamma: Callable[[int, dt.date, str], float] = lambda m, d, t: 1.0) -> pl.DataFrame:
    rows = [
        (m, d, t, gamma(m, d, t), CREATED) for m in sorted(GROUPS) for d in DAYS for t in GROUPS[m]
    ]
    return pl.DataFrame(
        rows, schema=["merchant_id", "utc_day", "tz_group_id", "gamma", "created_utc"], orient="row"
    ).with_columns(pl.col("merchant_id").cast(pl.UInt64))


def _build(
    s3: pl.DataFrame | None = None,
    policy: GroupMixRegularizerV1 | None = None,
    s1: pl.DataFrame | None = None,
    tz: pl.DataFrame | None = None,
) -> s4mod.S4Build:
    s1_, tz_ = inputs()
    return build_s4(
        s1 if s1 is not None else s1_,
        tz if tz is not None else tz_,
        s3 if s3 is not None else s3_frame(),
        policy or reg_policy(),
        created_utc=CREATED,
    )


def _code(fn: Callable[[], object]) -> SegmentError:
    with pytest.raises(SegmentError) as exc:
        fn()
    return exc.value


# --- values ----------------------------------------------------------------------------------


def test_base_shares_come_from_s1() -> None:
    out = _build().frame.filter(pl.col("utc_day") == DAYS[0])
    base = {(r["merchant_id"], r["tz_group_id"]): r["base_share"] for r in out.to_dicts()}
    assert base == {
        (11, "America/New_York"): 0.1,
        (11, "Europe/London"): 0.2,
        (11, "Europe/Paris"): 0.5 + 0.2,
        (22, "America/Chicago"): 0.03,
        (22, "America/New_York"): 0.97,
        (33, "Asia/Tokyo"): 0.6 + 0.4,
    }
    assert out.columns == [
        "merchant_id",
        "utc_day",
        "tz_group_id",
        "p_group",
        "base_share",
        "gamma",
        "created_utc",
        "mass_raw",
        "denom_raw",
    ]


def test_gamma_echo_mass_raw_and_denom() -> None:
    s3 = s3_frame(lambda m, d, t: 1.0 + 0.01 * len(t) + 0.1 * d.day)
    out = _build(s3).frame
    assert out["gamma"].to_list() == s3["gamma"].to_list()
    assert (out["mass_raw"] == out["base_share"] * out["gamma"]).all()
    for (_, _), grp in out.group_by(["merchant_id", "utc_day"]):
        total = 0.0
        for x in grp["mass_raw"].to_list():
            total += x
        assert grp["denom_raw"].unique().to_list() == [total]


def test_spec_vector_end_to_end() -> None:
    """Merchant 22 has p_raw = [0.03, 0.97] (γ = 1): the §6 vector [0.97, 0.03] mirrored."""
    out = _build(policy=reg_policy(**SPEC_CURRENT)).frame.filter(pl.col("merchant_id") == 22)
    assert out["p_group"].to_list()[:2] == [0.32, 0.6799999999999999]


def test_mass_conservation_and_single_group_days() -> None:
    b = _build(s3_frame(lambda m, d, t: 0.8 + 0.05 * len(t)))
    for (_, _), grp in b.frame.group_by(["merchant_id", "utc_day"]):
        total = 0.0
        for x in grp["p_group"].to_list():
            total += x
        assert abs(total - 1.0) <= 1e-12
    assert b.frame.filter(pl.col("merchant_id") == 33)["p_group"].to_list() == [1.0, 1.0]
    assert b.report["normalisation"]["max_abs_mass_error_per_day"] <= 1e-12


def test_regularizer_applies_only_from_two_groups() -> None:
    prov = _build().provenance
    by_m = {m: grp for (m,), grp in prov.group_by(["merchant_id"])}
    assert by_m[33]["eligible"].to_list() == [False, False]
    assert by_m[33]["delta_mass"].to_list() == [0.0, 0.0]
    assert by_m[11]["eligible"].all() and by_m[22]["eligible"].all()
    assert by_m[22]["applied"].all()
    assert set(prov.columns) >= {
        "delta_mass",
        "applied",
        "lambda_s",
        "lambda_c",
        "lambda_e",
        "h_pre",
        "h_post",
    }
    three = _build(policy=reg_policy(apply_when_groups_ge=3)).provenance
    assert three.filter(pl.col("merchant_id") == 22)["eligible"].to_list() == [False, False]
    assert three.filter(pl.col("merchant_id") == 11)["eligible"].all()


def test_disabled_regularizer_is_pure_renormalisation() -> None:
    base = load_pack(DEFAULT_PACK / "baseline")["group_mix_regularizer_v1"].model
    assert isinstance(base, GroupMixRegularizerV1)
    b = _build(s3_frame(lambda m, d, t: 0.9 + 0.1 * d.day), policy=base)
    f = b.frame
    assert (f["p_group"] == f["mass_raw"] / f["denom_raw"]).all()
    assert not b.provenance["eligible"].any()


def test_v19_holds_on_untouched_days_only() -> None:
    # Enabled but inert: every day is eligible, none is changed -> p == mass_raw / denom_raw.
    inert = reg_policy(max_p_group_soft_cap=1.0, regularization_strength=0.0, entropy_floor=0.0)
    b = _build(s3_frame(lambda m, d, t: 1.0 + 0.1 * len(t)), policy=inert)
    assert (b.provenance["eligible"] == (b.provenance["n_groups"] >= 2)).all()
    assert b.provenance["applied"].any() is False
    # sum_to_one still divides by the serial total, so equality holds within ε, not bitwise.
    ratio = b.frame["mass_raw"] / b.frame["denom_raw"]
    assert ((b.frame["p_group"] - ratio).abs() <= 1e-12).all()
    # Touched days legitimately differ from the audit ratio and do not trip V-19.
    touched = _build(policy=reg_policy(**SPEC_CURRENT))
    f = touched.frame.filter(pl.col("merchant_id") == 22)
    assert (f["p_group"] != f["mass_raw"] / f["denom_raw"]).all()


def test_v19_fires_when_an_untouched_day_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    def lying(p_raw: Any, lengths: Any, params: Any) -> RegularizeResult:
        res = regularize(p_raw, lengths, params)
        p = res.p.copy()
        p[0] += 1e-9
        p[1] -= 1e-9
        return dataclasses.replace(res, p=p, applied=np.zeros_like(res.applied))

    monkeypatch.setattr(s4mod, "regularize", lying)
    err = _code(_build)
    assert err.code == "2B-S4-095" and err.validator == "V-19"


def test_build_is_deterministic(tmp_path: Path) -> None:
    s3 = s3_frame(lambda m, d, t: 1.0 + 0.03 * len(t) - 0.01 * d.day)
    a, b = _build(s3), _build(s3)
    assert a.frame.equals(b.frame) and a.provenance.equals(b.provenance)
    for name, build in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        s4mod._write_parts(build.frame, tmp_path / name)
    assert folder_digest(tmp_path / "a") == folder_digest(tmp_path / "b")


def test_synthetic_world_properties() -> None:
    tz, s1 = synthetic_world(60, seed=21)
    b3 = build_s3(tz, s1, pack_policy(), manifest_fingerprint=MF, seed=3, created_utc=CREATED)
    b4 = build_s4(s1, tz, b3.frame, reg_policy(), created_utc=CREATED)
    assert b4.frame.height == b3.frame.height
    assert b4.frame.select(["merchant_id", "utc_day", "tz_group_id"]).equals(
        b3.frame.select(["merchant_id", "utc_day", "tz_group_id"])
    )
    assert b4.provenance["mass_abs_error"].to_numpy().max() <= 1e-12
    assert (b4.provenance["eligible"] == (b4.provenance["n_groups"] >= 2)).all()
    expected = (
        s1.join(tz, on=KEYS)
        .group_by(["merchant_id", "tzid"])
        .agg(pl.col("p_weight").sum())
        .rename({"tzid": "tz_group_id"})
    )
    got = b4.frame.filter(pl.col("utc_day") == dt.date(2026, 1, 1)).join(
        expected, on=["merchant_id", "tz_group_id"]
    )
    assert got.height == expected.height
    assert ((got["base_share"] - got["p_weight"]).abs() <= 1e-15).all()


# --- codes -----------------------------------------------------------------------------------


def test_exact_duplicate_site_timezones_row_is_041() -> None:
    _, tz = inputs()
    err = _code(lambda: _build(tz=pl.concat([tz, tz.head(1)])))
    assert err.code == "2B-S4-041" and err.validator == "V-04"


def test_join_miss_is_040() -> None:
    _, tz = inputs()
    err = _code(lambda: _build(tz=tz.filter(pl.col("legal_country_iso") != "GB")))
    assert err.code == "2B-S4-040" and "GB" in (err.key or "")


def test_base_share_sum_off_is_052() -> None:
    s1, _ = inputs()
    s1 = s1.with_columns(
        pl.when(pl.col("merchant_id") == 22).then(pl.col("p_weight") * 0.9).otherwise("p_weight")
    )
    err = _code(lambda: _build(s1=s1))
    assert err.code == "2B-S4-052" and err.key == "22"


def test_negative_p_weight_is_057() -> None:
    s1, _ = inputs()
    s1 = s1.with_columns(
        pl.when(pl.col("site_order") == 2).then(-0.1).otherwise("p_weight").alias("p_weight")
    )
    assert _code(lambda: _build(s1=s1)).code == "2B-S4-057"


def test_nonpositive_gamma_is_057() -> None:
    err = _code(lambda: _build(s3_frame(lambda m, d, t: 0.0 if m == 22 else 1.0)))
    assert err.code == "2B-S4-057" and "22" in (err.key or "")


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda f: pl.concat([f.head(1), f]), "2B-S4-041A"),
        (lambda f: pl.concat([f.slice(1, 1), f.head(1), f.slice(2)]), "2B-S4-083"),
        (
            lambda f: f.filter(
                ~(
                    (pl.col("merchant_id") == 11)
                    & (pl.col("tz_group_id") == "Europe/London")
                    & (pl.col("utc_day") == DAYS[0])
                )
            ),
            "2B-S4-050",
        ),
        (
            lambda f: f.filter(~((pl.col("merchant_id") == 11) & (pl.col("utc_day") == DAYS[1]))),
            "2B-S4-090",
        ),
        (lambda f: f.filter(pl.col("merchant_id") != 33), "2B-S4-050"),
        (
            lambda f: pl.concat(
                [f, f.tail(1).with_columns(pl.lit(44, dtype=pl.UInt64).alias("merchant_id"))]
            ),
            "2B-S4-050",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.col("tz_group_id") == "America/Chicago")
                .then(pl.lit("Asia/Seoul"))
                .otherwise("tz_group_id")
                .alias("tz_group_id")
            ).sort(["merchant_id", "utc_day", "tz_group_id"]),
            "2B-S4-050",
        ),
        (
            lambda f: f.with_columns(pl.lit("2025-12-31T00:00:00.000000Z").alias("created_utc")),
            "2B-S4-086",
        ),
        (lambda f: f.head(0), "2B-S4-090"),
    ],
)
def test_s3_grid_codes(edit: Callable[[pl.DataFrame], pl.DataFrame], code: str) -> None:
    assert _code(lambda: _build(edit(s3_frame()))).code == code


# --- runner ----------------------------------------------------------------------------------


@pytest.fixture
def through_s3(tmp_path: Path) -> TinyRun:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    write_s1(run)
    run_s3(run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint)
    return run


def _run(run: TinyRun) -> Any:
    return run_s4(run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint)


def test_run_s4_publishes(through_s3: TinyRun) -> None:
    out = _run(through_s3)
    tokens = {"seed": str(through_s3.seed), "manifest_fingerprint": through_s3.manifest_fingerprint}
    folder = through_s3.home.path("s4_group_weights", tokens)
    table = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))])
    assert table.equals(out.frame) and table.height == 450
    report = json.loads(through_s3.home.path("s4_run_report", tokens).read_bytes())
    assert report["component"] == "2B.S4" and report["summary"]["overall_status"] == "PASS"
    assert [v["id"] for v in report["validators"]] == [f"V-{i:02d}" for i in range(1, 21)]
    assert report["counters"]["rows_written"] == report["counters"]["rows_expected"] == 450
    assert report["counters"]["regularizer_rows_eligible"] == 2 * 90
    assert report["normalisation"]["max_abs_mass_error_per_day"] <= 1e-12
    assert report["policy"]["enabled"] is True
    assert report["inputs_summary"]["days_total"] == 90
    prov = out.extras["provenance"]
    assert prov.height == 3 * 90 and prov.filter(pl.col("eligible")).height == 180
    again = _run(through_s3)
    assert again.published[0].outcome == "idempotent"


def test_run_s4_missing_s3_is_020(tmp_path: Path) -> None:
    run = build_tiny_run(tmp_path)
    run_s0(run.home, run.run_id)
    write_s1(run)
    err = _code(lambda: _run(run))
    assert err.code == "2B-S4-020" and err.dataset == "s3_day_effects"


def test_run_s4_policy_edit_after_seal_is_070(through_s3: TinyRun) -> None:
    path = through_s3.home.path("group_mix_regularizer_v1")
    path.write_bytes(path.read_bytes() + b" ")
    assert _code(lambda: _run(through_s3)).code == "2B-S4-070"
