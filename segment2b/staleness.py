"""Dagster's own stale status per asset of one seed partition (the rerun matrix, in text).

Dagster has no public API for stale status outside the UI's GraphQL layer; this module is the
one place that reaches into ``dagster._core`` for it (the same resolver the UI uses), so an
upgrade that moves it breaks one small adapter, not the product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class AssetStatus:
    """One line of ``segment2b stale``: Dagster's status and its root causes."""

    key: str
    status: str  # FRESH | STALE | MISSING
    causes: tuple[str, ...]
    upstream_stale: tuple[str, ...]


def stale_report(
    defs: dg.Definitions, instance: dg.DagsterInstance, partition: str
) -> list[AssetStatus]:
    """Status of every materialisable asset for ``partition`` (unpartitioned ones: their own).

    ``causes`` are Dagster's root causes (new policy data version, new code version, upstream
    data version changed). Dagster reports staleness only one edge at a time, so
    ``upstream_stale`` lists stale ancestors too: what a rerun from the changed input will touch.
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
        status = resolver.get_status(key, pk)
        causes = tuple(
            f"{c.key.to_user_string()}: {c.reason}"
            + (f" ({c.dependency.to_user_string()})" if c.dependency else "")
            for c in resolver.get_stale_root_causes(key, pk)
        )
        ups = tuple(
            sorted(
                p.to_user_string()
                for p in graph.get(key).parent_keys
                if p in statuses and (statuses[p].status != "FRESH" or statuses[p].upstream_stale)
            )
        )
        statuses[key] = AssetStatus(key.to_user_string(), status.value, causes, ups)
    return [statuses[k] for k in keys]


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
    width = max(len(r.key) for r in rows)
    lines = []
    for r in rows:
        label = r.status if r.status != "FRESH" or not r.upstream_stale else "STALE (upstream)"
        detail = "; ".join(r.causes)
        if r.upstream_stale:
            detail = (
                (detail + "; " if detail else "") + "upstream stale: " + ", ".join(r.upstream_stale)
            )
        lines.append(f"{r.key.ljust(width)}  {label:<16} {detail}".rstrip())
    return "\n".join(lines)
