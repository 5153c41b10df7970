"""Gate rows of certification.md §4 as data: id, metric, B and B+ thresholds, comparison.

Generic on purpose: S3/S4 gates and rails are added as further constants beside ``S1_GATES``;
the verdict reducer (§7) consumes ``Gate.evaluate`` outcomes and never re-reads thresholds.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Op = Literal[">=", "<=", ">", "<"]
Kind = Literal["hard", "report_only"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Gate:
    """One realism gate: ``value <op> threshold`` at B and at B+ (comparisons inclusive as
    written, §2). A NaN value (metric undefined, e.g. empty universe) fails both bands."""

    id: str
    metric: str
    b_threshold: float
    bplus_threshold: float
    op: Op
    kind: Kind = "hard"

    def evaluate(self, value: float) -> tuple[bool, bool]:
        """(passes at B, passes at B+)."""
        if math.isnan(value):
            return False, False
        cmp = _OPS[self.op]
        return cmp(value, self.b_threshold), cmp(value, self.bplus_threshold)


S1_GATES: tuple[Gate, ...] = (
    Gate("T-S1-01", "residual_abs_uniform_median", 0.003, 0.006, ">="),
    Gate("T-S1-02", "top1_top2_gap_median", 0.03, 0.05, ">="),
    Gate("T-S1-03", "merchant_hhi_iqr", 0.06, 0.10, ">="),
    Gate("X-S1-UNIF", "uniform_row_share", 0.90, 0.90, "<", kind="report_only"),
)
"""The S1 rows of the gate table (§4), including the report-only X-S1-UNIF (README dec. 13)."""


def gate_results(gates: Iterable[Gate], metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per gate: id, metric, observed value, thresholds, kind, pass at B / B+.

    A missing or null metric is evaluated as NaN (fails both bands).
    """
    rows: list[dict[str, Any]] = []
    for gate in gates:
        raw = metrics.get(gate.metric)
        value = math.nan if raw is None else float(raw)
        pass_b, pass_bplus = gate.evaluate(value)
        rows.append(
            {
                "id": gate.id,
                "metric": gate.metric,
                "value": value,
                "op": gate.op,
                "b_threshold": gate.b_threshold,
                "bplus_threshold": gate.bplus_threshold,
                "kind": gate.kind,
                "pass_b": pass_b,
                "pass_bplus": pass_bplus,
            }
        )
    return rows
