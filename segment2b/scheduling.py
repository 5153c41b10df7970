"""The nightly certification cycle: a schedule starts it, one sensor walks it to the end.

A cycle is four stages over the seed panel: worlds (one run per seed) → 1B gate → states
(one run per seed) → S8 bundle + certification. Every run of a cycle carries the tag
``segment2b/cycle=<scheduled date>``; the sensor looks at the runs of the open cycle and asks
for the next stage once every run of the current one succeeded. Run keys make each request
idempotent, so a sensor tick that repeats itself never starts a stage twice.
"""

import os
from collections.abc import Mapping, Sequence

import dagster as dg

from segment2b.jobs import certify_job, gate_job, seed_job, world_job
from segment2b.partitions import REQUIRED_SEEDS

CYCLE_TAG = "segment2b/cycle"
STAGE_TAG = "segment2b/stage"
CRON_ENV = "SEGMENT2B_CERTIFICATION_CRON"
DEFAULT_CRON = "0 2 * * *"  # nightly, 02:00 UTC
STAGES: tuple[tuple[str, str, bool], ...] = (
    ("world", world_job.name, True),
    ("gate", gate_job.name, False),
    ("states", seed_job.name, True),
    ("certify", certify_job.name, False),
)


def stage_requests(cycle: str, stage: str, seeds: Sequence[int]) -> list[dg.RunRequest]:
    """The run requests of one stage of ``cycle`` (one per seed for partitioned stages)."""
    job, per_seed = next((j, p) for s, j, p in STAGES if s == stage)
    tags = {CYCLE_TAG: cycle, STAGE_TAG: stage}
    if not per_seed:
        return [dg.RunRequest(run_key=f"{cycle}:{stage}", job_name=job, tags=tags)]
    return [
        dg.RunRequest(
            run_key=f"{cycle}:{stage}:{seed}", job_name=job, partition_key=str(seed), tags=tags
        )
        for seed in seeds
    ]


def next_stage(
    statuses: Mapping[str, Sequence[dg.DagsterRunStatus]], seeds: Sequence[int]
) -> str | None:
    """The stage to start given the run statuses per stage of a cycle, or None (wait / done /
    failed). A stage is complete when it has all its runs and every one succeeded."""
    for stage, _job, per_seed in STAGES:
        runs = statuses.get(stage, [])
        if not runs:
            return stage
        expected = len(seeds) if per_seed else 1
        if len(runs) < expected or any(s != dg.DagsterRunStatus.SUCCESS for s in runs):
            return None
    return None


@dg.schedule(
    cron_schedule=os.environ.get(CRON_ENV, DEFAULT_CRON),
    job=world_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Nightly certification of the seed panel (cron from "
    f"${CRON_ENV}, default '{DEFAULT_CRON}'): starts a cycle with the world stage.",
)
def nightly_certification(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    cycle = context.scheduled_execution_time.strftime("%Y-%m-%dT%H%M")
    return stage_requests(cycle, "world", REQUIRED_SEEDS)


@dg.sensor(
    jobs=[world_job, gate_job, seed_job, certify_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Advances open certification cycles stage by stage (world → gate → states → "
    "certify).",
)
def certification_cycle(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    runs = context.instance.get_runs(filters=dg.RunsFilter(tags={STAGE_TAG: "world"}), limit=20)
    requests: list[dg.RunRequest] = []
    for cycle in sorted({r.tags[CYCLE_TAG] for r in runs if CYCLE_TAG in r.tags}):
        statuses: dict[str, list[dg.DagsterRunStatus]] = {}
        for run in context.instance.get_runs(filters=dg.RunsFilter(tags={CYCLE_TAG: cycle})):
            statuses.setdefault(run.tags.get(STAGE_TAG, ""), []).append(run.status)
        stage = next_stage(statuses, REQUIRED_SEEDS)
        if stage is not None:
            requests += stage_requests(cycle, stage, REQUIRED_SEEDS)
    return dg.SensorResult(run_requests=requests)
