"""The five 2B policies as observable source assets; DataVersion = H1 digest of the file.

Editing a policy changes only its own data version, so only the assets that read it (and
everything below them) become stale.
"""

import hashlib
import warnings

import dagster as dg

from segment2b.policy.models import POLICY_IDS
from segment2b.resources import SegmentStore

POLICY_GROUP = "policies"
# Observable source assets are marked beta; the API is what we want (a file's digest as its
# data version), so keep the warning out of every command's output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def _policy_source(policy_id: str) -> dg.SourceAsset:
    @dg.observable_source_asset(
        name=policy_id,
        group_name=POLICY_GROUP,
        description=f"Policy file {policy_id}.json of the active pack (token-less).",
    )
    def _observe(store: SegmentStore) -> dg.DataVersion:
        path = store.policy_root() / f"{policy_id}.json"
        return dg.DataVersion(hashlib.sha256(path.read_bytes()).hexdigest())

    return _observe


POLICY_ASSETS: list[dg.SourceAsset] = [_policy_source(pid) for pid in POLICY_IDS]
