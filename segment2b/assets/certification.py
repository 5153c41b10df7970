"""The cross-seed ``certification_2B`` asset: one evidence pack per certification run.

Grain: one certification record (verdict, panel table, pack path, lock) per manifest and
policy set, over every seed partition. Reads published datasets and Dagster's own
materialisation records (data versions, step timings); never writes into a state's output.
"""

import base64
from collections.abc import Mapping
from typing import Any

import dagster as dg

from segment2b.assets.audit import BUNDLE_KEY
from segment2b.certification.evidence import certification_markdown
from segment2b.certification.runner import certify_panel, panel_table
from segment2b.partitions import REQUIRED_SEEDS
from segment2b.resources import SegmentStore, WorldSettings

# One asset per state whose materialisation marks the state's runtime window (S5 and S6 share a
# step; their run-reports split it).
STATE_ASSETS: dict[str, str] = {
    "S0": "s0_gate_receipt_2B",
    "S1": "s1_site_weights",
    "S2": "s2_alias_index",
    "S3": "s3_day_effects",
    "S4": "s4_group_weights",
    "S5": "rng_event_alias_pick_group",
    "S7": "s7_audit_report",
}
DATA_VERSION_TAG = "dagster/data_version"


def _latest(instance: dg.DagsterInstance, key: str, partition: str | None) -> Any | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key),
            asset_partitions=[partition] if partition is not None else None,
        ),
        limit=1,
    ).records
    return records[0].event_log_entry if records else None


def _step_window(instance: dg.DagsterInstance, entry: Any) -> tuple[float | None, float | None]:
    """(start, success) timestamps of the step that produced ``entry``."""
    start = end = None
    for ev in instance.all_logs(
        entry.run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    ):
        if ev.step_key != entry.step_key:
            continue
        if ev.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            start = ev.timestamp
        else:
            end = ev.timestamp
    return start, end


def lineage_records(
    instance: dg.DagsterInstance, seeds: tuple[int, ...]
) -> tuple[dict[int, dict[str, tuple[float | None, float | None]]], dict[str, Any]]:
    """Per-seed state windows and every state's data version, from the instance's records."""
    windows: dict[int, dict[str, tuple[float | None, float | None]]] = {}
    versions: dict[str, Any] = {}
    for seed in seeds:
        per: dict[str, tuple[float | None, float | None]] = {}
        seed_versions: dict[str, str | None] = {}
        for state, key in STATE_ASSETS.items():
            entry = _latest(instance, key, str(seed))
            if entry is None:
                continue
            mat = entry.asset_materialization
            seed_versions[key] = mat.tags.get(DATA_VERSION_TAG) if mat else None
            start, end = _step_window(instance, entry)
            if state == "S5" and start is not None and end is not None:
                perf = mat.metadata.get("performance") if mat else None
                s5_secs = (perf.value or {}).get("elapsed_s") if perf is not None else None
                split = start + float(s5_secs) if s5_secs is not None else None
                per["S5"] = (start, split)
                per["S6"] = (split, end)
            else:
                per[state] = (start, end)
        windows[seed] = per
        versions[str(seed)] = seed_versions
    bundle = _latest(instance, BUNDLE_KEY, None)
    if bundle is not None:
        mat = bundle.asset_materialization
        versions[BUNDLE_KEY] = mat.tags.get(DATA_VERSION_TAG) if mat else None
        s8 = _step_window(instance, bundle)
        for per in windows.values():
            per["S8"] = s8
    return windows, versions


def _png_markdown(paths: Mapping[str, bytes]) -> str:
    return "\n\n".join(
        f"**{name}**\n\n![{name}](data:image/png;base64,{base64.b64encode(data).decode()})"
        for name, data in paths.items()
    )


@dg.asset(
    deps=[BUNDLE_KEY, "s7_audit_report", "s1_site_weights", "s3_day_effects", "s4_group_weights"],
    group_name="certification",
    code_version="certification-1",
    description="Realism certification over every seed partition: scorecards, cross-seed "
    "verdict, immutable evidence pack with plots, lock record and retention pointers.",
)
def certification_2B(  # noqa: N802 - asset key follows the dataset naming
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> dg.MaterializeResult:
    home = store.storage()
    windows, versions = lineage_records(context.instance, REQUIRED_SEEDS)
    result = certify_panel(
        home, world.config(), REQUIRED_SEEDS, store.pack(), windows=windows, data_versions=versions
    )
    run = result.run
    cert = run.certification
    context.log.info(
        "certification %s\n%s", cert["status"], panel_table(cert, run.scorecards, run.pack.rel)
    )
    first = run.pack.path / f"seeds/seed={REQUIRED_SEEDS[0]}/plots"
    shown = {p.name: p.read_bytes() for p in sorted(first.glob("*.png"))}
    return dg.MaterializeResult(
        metadata={
            "verdict": cert["status"],
            "missing_seeds": dg.MetadataValue.json(list(cert["missing_seeds"])),
            "panel": dg.MetadataValue.md(certification_markdown(cert, run.scorecards)),
            "pack": dg.MetadataValue.path(str(run.pack.path)),
            "pack_outcome": run.pack.outcome,
            "lock": dg.MetadataValue.path(str(result.lock.path)),
            "freeze_status": result.lock.freeze_status,
            "pruned_bytes": result.pruned.bytes_freed,
            f"plots_seed_{REQUIRED_SEEDS[0]}": dg.MetadataValue.md(_png_markdown(shown)),
        },
        data_version=dg.DataVersion(run.pack.digest),
    )
