"""Benchmark helper (not collected by pytest): time ``build_s1`` + ``build_s2`` at world scale.

Synthetic world at the design's scale (certification.md §9: 1,238 merchants, ~31k sites, per
merchant min 2 / median 16 / p90 36 / p99 168 / max 2,546): a log-normal body with a Pareto
tail, 1-3 countries per merchant, ``site_order`` contiguous per merchant × country.

    .venv/bin/python -m segment2b_tests.bench_s1_s2 [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import polars as pl

from segment2b.certification.s1_metrics import s1_gate_results, s1_metrics
from segment2b.policy.store import DEFAULT_PACK, load_policy
from segment2b.states.s1_site_weights import build_s1
from segment2b.states.s2_alias_tables import build_s2

CREATED = "2026-01-01T00:00:00.000000Z"
COUNTRIES = ("DE", "FR", "GB", "IT", "JP", "US")


def synthetic_sites(n_merchants: int = 1238, *, seed: int = 20260101) -> pl.DataFrame:
    """Heavy-tailed ``site_locations`` (PK columns only) with a local, seeded generator."""
    rng = np.random.default_rng(seed)
    body = np.rint(16.0 * np.exp(0.63 * rng.standard_normal(n_merchants)))
    tail = rng.random(n_merchants) < 0.03
    pareto = 60.0 * (1.0 - rng.random(n_merchants)) ** (-1.0 / 0.9)
    sizes = np.where(tail, pareto, body).clip(2, 2546).astype(np.int64)
    sizes[int(np.argmax(sizes))] = 2546
    mids = rng.choice(np.arange(1, 10 * n_merchants), n_merchants, replace=False)
    mids = np.sort(mids).astype(np.uint64) + np.uint64(2**40)
    rows_m, rows_c, rows_o = [], [], []
    for m, k in zip(mids.tolist(), sizes.tolist(), strict=True):
        n_c = int(min(k, rng.integers(1, 4)))
        split = np.sort(rng.choice(np.arange(1, k), n_c - 1, replace=False)) if n_c > 1 else []
        counts = np.diff(np.r_[0, split, k]).astype(np.int64).tolist()
        for c, cnt in zip(sorted(rng.choice(COUNTRIES, n_c, replace=False)), counts, strict=True):
            rows_m += [m] * cnt
            rows_c += [str(c)] * cnt
            rows_o += list(range(1, cnt + 1))
    return pl.DataFrame(
        {"merchant_id": rows_m, "legal_country_iso": rows_c, "site_order": rows_o},
        schema={"merchant_id": pl.UInt64, "legal_country_iso": pl.String, "site_order": pl.Int32},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sites = synthetic_sites()
    sizes = sites.group_by("merchant_id").len()["len"].to_numpy()
    print(
        f"world: {sizes.size} merchants, {sites.height} sites, per merchant min {sizes.min()} "
        f"median {np.median(sizes):.0f} p90 {np.quantile(sizes, 0.9):.0f} "
        f"p99 {np.quantile(sizes, 0.99):.0f} max {sizes.max()}"
    )
    for pack in (DEFAULT_PACK, DEFAULT_PACK / "baseline"):
        loaded = load_policy(pack / "alias_layout_policy_v1.json", "alias_layout_policy_v1")
        policy = loaded.model
        best = (float("inf"), float("inf"))
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            s1 = build_s1(sites, policy, created_utc=CREATED)  # type: ignore[arg-type]
            t1 = time.perf_counter()
            s2 = build_s2(
                s1.frame,
                policy,  # type: ignore[arg-type]
                created_utc=CREATED,
                policy_digest=loaded.sha256_hex,
            )
            t2 = time.perf_counter()
            best = (min(best[0], t1 - t0), min(best[1], t2 - t1))
        metrics = s1_metrics(s1.frame)
        print(f"\npack {pack.name}: best of {args.repeat}")
        print(f"  build_s1 {best[0] * 1000:.0f} ms {dict(s1.durations_ms)}")
        print(f"  build_s2 {best[1] * 1000:.0f} ms {dict(s2.durations_ms)}")
        print(f"  S1+S2 {sum(best) * 1000:.0f} ms; blob {len(s2.blob)} bytes")
        print("  metrics " + json.dumps(metrics, sort_keys=True))
        for row in s1_gate_results(metrics):
            print(f"  {row['id']:<10} {row['value']:.6f} B={row['pass_b']} B+={row['pass_bplus']}")
        print(
            "  transforms "
            + json.dumps(
                {
                    k: s1.counters[k]
                    for k in (
                        "profile_component_counts",
                        "profile_bucket_counts",
                        "profile_soft_cap_applied_merchants",
                        "profile_secondary_floor_applied_merchants",
                        "max_abs_delta_per_row",
                    )
                },
                sort_keys=True,
            )
        )
        print(f"  max_abs_delta_decode {s2.counters['max_abs_delta_decode']:.3e}")


if __name__ == "__main__":
    main()
