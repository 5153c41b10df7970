"""Thin wrappers turning pure gate evaluations into Dagster asset-check specs and results.

Realism gates report the observed value, the B and B+ thresholds and both outcomes; a hard gate
failing B is an ERROR, advisory rows are WARN. Structural checks are blocking: a failure stops
everything downstream in the run.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from segment2b.certification.gates import Gate, gate_results


def check_name(gate_id: str) -> str:
    """Dagster check names are identifiers: ``T-S1-01`` → ``T_S1_01``."""
    return gate_id.replace("-", "_")


def gate_specs(asset: str, gates: Iterable[Gate]) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            check_name(g.id),
            asset=asset,
            description=f"{g.id} ({g.kind}): {g.metric} {g.op} {g.b_threshold} (B) / "
            f"{g.bplus_threshold} (B+)",
        )
        for g in gates
    ]


def structural_spec(asset: str, name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description)


def advisory_spec(asset: str, name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, description=description)


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def gate_check_results(
    asset: str, gates: Sequence[Gate], metrics: Mapping[str, Any]
) -> list[dg.AssetCheckResult]:
    out = []
    for row in gate_results(gates, metrics):
        advisory = row["kind"] == "report_only"
        out.append(
            dg.AssetCheckResult(
                asset_key=asset,
                check_name=check_name(row["id"]),
                passed=bool(row["pass_b"]),
                severity=dg.AssetCheckSeverity.WARN if advisory else dg.AssetCheckSeverity.ERROR,
                metadata={
                    "observed": _num(row["value"]),
                    "metric": row["metric"],
                    "op": row["op"],
                    "threshold_B": row["b_threshold"],
                    "threshold_Bplus": row["bplus_threshold"],
                    "outcome_B": "PASS" if row["pass_b"] else "FAIL",
                    "outcome_Bplus": "PASS" if row["pass_bplus"] else "FAIL",
                    "kind": row["kind"],
                },
            )
        )
    return out


def structural_result(
    asset: str, name: str, violations: Sequence[str], **metadata: Any
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=not violations,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "violations": len(violations),
            "first": violations[0] if violations else "",
            **metadata,
        },
    )


def advisory_result(asset: str, name: str, passed: bool, **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
            for k, v in metadata.items()
        },
    )
