"""Dagster's own stale status per asset of one seed partition (the rerun matrix, in text).

Dagster has no public API for stale status outside the UI's GraphQL layer; this module is the
one place that reaches into ``dagster._core`` for it (the same resolver the UI uses), so an
upgrade that moves it breaks one small adapter, not the product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from segment2b.policy.models import POLICY_IDS

# Parents whose new data version re-seals an asset without changing its own data version:
# S0 and the roster record policy digests, but their versions exclude them (spec README §1), so
# a policy edit reaches S1…S8 only through each state's own policy dependency.
SEAL_ONLY: dict[str, frozenset[str]] = {
    key: frozenset(POLICY_IDS)
    for key in ("s0_gate_receipt_2B", "sealed_inputs_2B", "s5_arrival_roster")
}


@dataclass(frozen=True)
class AssetStatus:
    """One line of ``segment2b stale``: Dagster's status, its causes, and what a rerun touches.

    ``status`` is Dagster's own (FRESH | STALE | MISSING); ``changes`` says whether rerunning
    will produce a new data version (False for a seal-only refresh); ``upstream`` lists parents
    whose rerun will change them (Dagster reports staleness one edge at a time).
    """

    key: str
    status: str
    causes: tuple[str, ...]
    changes: bool
    upstream: tuple[str, ...]

    @property
    def label(self) -> str:
        if self.status == "STALE" and not self.changes and not self.upstream:
            return "STALE (seal)"
        if self.status == "FRESH" and self.upstream:
            return "STALE (upstream)"
        return self.status


def stale_report(
    defs: dg.Definitions, instance: dg.DagsterInstance, partition: str
) -> list[AssetStatus]:
    """Status of every materialisable asset for ``partition`` (unpartitioned ones: their own).

    ``causes`` are Dagster's root causes (new policy data version, new code version, upstream
    data version changed).
    """
    from dagster._core.asset_graph_view.asset_graph_view import (
        AssetGraphView,
        TemporalContext,
    )
    from dagster._core.definitions.data_version import (
        CachingStaleStatusResolver,
    )
    from dagster._time import get_current_datetime

    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(
        instance=instance, asset_graph=graph, loading_context=view
    )
    keys = sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string())
    statuses: dict[dg.AssetKey, AssetStatus] = {}

    def part_for(key: dg.AssetKey) -> str | None:
        return partition if graph.get(key).is_partitioned else None

    for key in _topological(graph, keys):
        pk = part_for(key)
        name = key.to_user_string()
        status = resolver.get_status(key, pk)
        causes = tuple(
            f"{_label(c.key)}: {c.reason}" + (f" ({_label(c.dependency)})" if c.dependency else "")
            for c in resolver.get_stale_root_causes(key, pk)
        )
        direct = [
            getattr(c.dependency or c.key, "asset_key", c.dependency or c.key)
            for c in resolver.get_stale_causes(key, pk)
        ]
        seal_only = SEAL_ONLY.get(name, frozenset())
        upstream = tuple(
            sorted(
                p.to_user_string()
                for p in graph.get(key).parent_keys
                if p in statuses and statuses[p].changes
            )
        )
        # A cause on the asset itself (new code version) always changes it; a parent's new
        # data version changes it unless that parent is only sealed.
        own_change = status.value == "STALE" and any(
            d == key or d.to_user_string() not in seal_only for d in direct
        )
        changes = status.value == "MISSING" or own_change or bool(upstream)
        statuses[key] = AssetStatus(name, status.value, causes, changes, upstream)
    return [statuses[k] for k in keys]


def _label(key: object) -> str:
    """``asset`` or ``asset[partition]`` for an AssetKey or an AssetKeyPartitionKey."""
    asset_key = getattr(key, "asset_key", key)
    partition = getattr(key, "partition_key", None)
    name = asset_key.to_user_string()  # type: ignore[attr-defined]
    return f"{name}[{partition}]" if partition else name


def _topological(graph: object, keys: Sequence[dg.AssetKey]) -> list[dg.AssetKey]:
    order: list[dg.AssetKey] = []
    seen: set[dg.AssetKey] = set()
    wanted = set(keys)

    def visit(k: dg.AssetKey) -> None:
        if k in seen:
            return
        seen.add(k)
        for p in sorted(graph.get(k).parent_keys, key=lambda x: x.to_user_string()):  # type: ignore[attr-defined]
            if p in wanted:
                visit(p)
        order.append(k)

    for k in keys:
        visit(k)
    return order


def format_report(rows: Sequence[AssetStatus]) -> str:
    """One line per asset: key, label, Dagster's causes and the changed upstreams."""
    width = max(len(r.key) for r in rows)
    lines = []
    for r in rows:
        detail = "; ".join(r.causes)
        if r.status == "STALE" and not r.changes:
            detail += " (re-seal only: data version unchanged, nothing below reruns)"
        if r.upstream:
            detail = (
                (detail + "; " if detail else "") + "upstream changes: " + ", ".join(r.upstream)
            )
        lines.append(f"{r.key.ljust(width)}  {r.label:<16} {detail}".rstrip())
    return "\n".join(lines)
