"""One pydantic model per 2B policy (contracts §8). Unknown keys and out-of-range values fail.

Models check shape and ranges; states add the semantic checks their documents list (for
example S2's exact-value table) and raise them under their own codes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Semver = Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
Hex64 = Annotated[str, Field(pattern=r"^[a-f0-9]{64}$")]
Iso2 = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
Stream2B = Annotated[str, Field(pattern=r"^2B\.[A-Za-z0-9_.-]+$")]
Stream3B = Annotated[str, Field(pattern=r"^3B\.[A-Za-z0-9_.-]+$")]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Strict(BaseModel):
    """Fields-strict base: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyBase(Strict):
    version_tag: Annotated[str, Field(min_length=1)]
    policy_version: Semver
    notes: str | None = None
    extensions: dict[str, Any] | None = None


# --- route_rng_policy_v1 -------------------------------------------------------------------


class CounterStart(Strict):
    hi: U64
    lo: U64


class StreamBasis(Strict):
    key_basis: list[str]
    counter_start: CounterStart
    counter_step_per_event: Literal[1]
    counter_wrap_policy: Literal["abort_on_wrap"]

    @field_validator("key_basis")
    @classmethod
    def _basis(cls, v: list[str]) -> list[str]:
        if v != ["seed", "parameter_hash", "run_id"]:
            raise ValueError("key_basis must be exactly ['seed', 'parameter_hash', 'run_id']")
        return v


class EventFamily(Strict):
    substream_label: str | None = None
    blocks: Literal[1]
    draws: str


class RoutingSelectionUnits(Strict):
    draws_per_selection: Literal[2]


class RoutingEdgeUnits(Strict):
    draws_per_virtual: Literal[1]


class EdgeCatalogueUnits(Strict):
    draws_per_edge: Literal[2]


class RoutingSelectionStream(Strict):
    rng_stream_id: Stream2B
    basis: StreamBasis
    event_families: dict[Literal["alias_pick_group", "alias_pick_site"], EventFamily]
    draws_per_unit: RoutingSelectionUnits

    @field_validator("event_families")
    @classmethod
    def _families(cls, v: dict[str, EventFamily]) -> dict[str, EventFamily]:
        for name in ("alias_pick_group", "alias_pick_site"):
            if name not in v or v[name].draws != "1":
                raise ValueError(f"event family {name} is required with draws '1'")
        return v


class RoutingEdgeStream(Strict):
    rng_stream_id: Stream2B
    basis: StreamBasis
    event_families: dict[Literal["cdn_edge_pick"], EventFamily]
    draws_per_unit: RoutingEdgeUnits


class EdgeCatalogueStream(Strict):
    rng_stream_id: Stream3B
    basis: StreamBasis
    event_families: dict[Literal["edge_jitter", "edge_tile_assign"], EventFamily]
    draws_per_unit: EdgeCatalogueUnits


class Streams(Strict):
    routing_selection: RoutingSelectionStream
    routing_edge: RoutingEdgeStream
    virtual_edge_catalogue: EdgeCatalogueStream


class RouteRngPolicyV1(PolicyBase):
    policy_id: Literal["route_rng_policy_v1"]
    rng_engine: Literal["philox2x64-10"]
    streams: Streams


# --- alias_layout_policy_v1 ----------------------------------------------------------------


class PaddingRule(Strict):
    pad_byte_hex: Annotated[str, Field(pattern=r"^[A-Fa-f0-9]{2}$")]
    pad_included_in_slice_length: bool | None = None


class RecordLayout(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    prob_qbits: Annotated[int, Field(ge=1)]


class DigestSpec(Strict):
    algorithm: str
    scope: str
    encoding: str


class RequiredIndexFields(Strict):
    header: list[str]
    merchant_row: list[str]


class SizeBucket(Strict):
    min_sites: Annotated[int, Field(ge=0)] = 0
    max_sites: Annotated[int, Field(ge=0)] | None = None


class ProfileMixtureV2(Strict):
    merchant_size_buckets: dict[str, SizeBucket]
    mixture_weights: dict[str, dict[str, float] | float]
    concentration_alpha_by_bucket: dict[str, dict[str, float] | float] | float
    top1_soft_cap_by_bucket: dict[str, float] | float
    min_secondary_mass: dict[str, float] | float
    deterministic_seed_scope: str

    @model_validator(mode="after")
    def _buckets_contiguous(self) -> ProfileMixtureV2:
        # Bucket table must tile [1, inf) without gaps or overlaps (a gap leaves merchants to the
        # K<=5/K<=20 fallback silently; we fail closed instead).
        spans = sorted(
            (b.min_sites, b.max_sites if b.max_sites is not None else 2**63)
            for b in self.merchant_size_buckets.values()
        )
        expect = 1
        for lo, hi in spans:
            lo_eff = max(lo, 1)
            if lo_eff != expect or hi < lo_eff:
                raise ValueError(
                    f"merchant_size_buckets must tile 1..inf with no gap or overlap (at {expect})"
                )
            expect = hi + 1
        if expect <= 2**63:
            raise ValueError(
                "merchant_size_buckets must be unbounded above (last max_sites absent)"
            )
        return self


class AliasLayoutPolicyV1(PolicyBase):
    policy_id: Literal["alias_layout_policy_v1"]
    layout_version: str
    endianness: Literal["little", "big"]
    alignment_bytes: Annotated[int, Field(ge=1)]
    padding_rule: PaddingRule
    quantised_bits: Annotated[int, Field(ge=1)]
    normalisation_epsilon: PositiveFloat
    quantisation_epsilon: PositiveFloat
    weight_source: dict[str, Any]
    floor_spec: dict[str, Any]
    fallback: dict[str, Any]
    required_s1_provenance: dict[str, Any]
    encode_spec: dict[str, Any]
    decode_law: str
    record_layout: RecordLayout
    checksum: DigestSpec
    blob_digest: DigestSpec
    required_index_fields: RequiredIndexFields
    profile_mixture_v2: ProfileMixtureV2 | None = None
    cap_spec: dict[str, Any] | None = None
    tiny_negative_epsilon: Annotated[float, Field(ge=0)] | None = None


# --- day_effect_policy_v1 ------------------------------------------------------------------


class DayRange(Strict):
    start_day: dt.date
    end_day: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> DayRange:
        if self.start_day > self.end_day:
            raise ValueError(f"start_day {self.start_day} is after end_day {self.end_day}")
        return self


class RngDerivation(Strict):
    domain_master: str
    domain_stream: str
    low64_rule: Literal["LE64_tail_bytes_24_31"]
    counter_split_rule: Literal["BE64_bytes_16_23_and_24_31"]
    key_basis: list[Literal["manifest_fingerprint_bytes", "seed_u64", "rng_stream_id"]]
    base_counter_basis: list[Literal["manifest_fingerprint_bytes", "seed_u64", "rng_stream_id"]]


class PrefixRule(Strict):
    prefix: str
    multiplier: PositiveFloat


class SigmaMultiplier(Strict):
    default: PositiveFloat
    prefix_rules: list[PrefixRule] = []


class SigmaJitter(Strict):
    enabled: bool
    amplitude: Annotated[float, Field(ge=0, le=1)]
    seed_scope: str


class GammaClip(Strict):
    min: PositiveFloat
    max: PositiveFloat


class SigmaGammaPolicyV2(Strict):
    enabled: bool
    sigma_base_by_segment: dict[str, PositiveFloat]
    sigma_multiplier_by_tz_group: SigmaMultiplier
    sigma_jitter_by_merchant: SigmaJitter
    weekly_component_amp_by_segment: dict[str, Annotated[float, Field(ge=0)]]
    sigma_min: PositiveFloat
    sigma_max: PositiveFloat
    gamma_clip: GammaClip

    @model_validator(mode="after")
    def _bounds(self) -> SigmaGammaPolicyV2:
        for name in ("sigma_base_by_segment", "weekly_component_amp_by_segment"):
            if "default" not in getattr(self, name):
                raise ValueError(f"{name} must contain 'default'")
        if self.sigma_max < self.sigma_min:
            raise ValueError(f"sigma_max {self.sigma_max} < sigma_min {self.sigma_min}")
        if self.gamma_clip.max < self.gamma_clip.min:
            raise ValueError(f"gamma_clip.max {self.gamma_clip.max} < min {self.gamma_clip.min}")
        return self


class DayEffectPolicyV1(PolicyBase):
    policy_id: Literal["day_effect_policy_v1"]
    rng_engine: Literal["philox2x64-10"]
    rng_stream_id: Stream2B
    draws_per_row: Literal[1]
    sigma_gamma: PositiveFloat
    day_range: DayRange
    rng_derivation: RngDerivation
    record_fields: Annotated[list[str], Field(min_length=1)]
    created_utc_policy_echo: bool
    sha256_hex: Hex64
    sigma_gamma_policy_v2: SigmaGammaPolicyV2 | None = None


# --- group_mix_regularizer_v1 --------------------------------------------------------------


class GroupMixRegularizerV1(PolicyBase):
    policy_id: Literal["group_mix_regularizer_v1"]
    enabled: bool
    apply_when_groups_ge: Annotated[int, Field(ge=2)]
    max_p_group_soft_cap: Annotated[float, Field(gt=0, le=1)]
    regularization_strength: Annotated[float, Field(ge=0, le=1)]
    entropy_floor: Annotated[float, Field(ge=0)]
    preserve_rank_order: bool
    sum_to_one: bool
    sha256_hex: Hex64 | None = None


# --- virtual_edge_policy_v1 ----------------------------------------------------------------


class Edge(Strict):
    edge_id: Annotated[str, Field(min_length=1)]
    ip_country: Iso2
    edge_lat: Annotated[float, Field(ge=-90, le=90)]
    edge_lon: Annotated[float, Field(gt=-180, le=180)]
    weight: PositiveFloat | None = None
    country_weights: dict[Iso2, Annotated[float, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _one_weight(self) -> Edge:
        if (self.weight is None) == (self.country_weights is None):
            raise ValueError("exactly one of weight or country_weights is required")
        return self


class EdgeRef(Strict):
    edge_id: Annotated[str, Field(min_length=1)]
    ip_country: Iso2
    weight: PositiveFloat


class GeoPoint(Strict):
    edge_lat: Annotated[float, Field(ge=-90, le=90)]
    edge_lon: Annotated[float, Field(gt=-180, le=180)]


class VirtualEdgePolicyV1(PolicyBase):
    policy_id: Literal["virtual_edge_policy_v1"]
    edges: Annotated[list[Edge], Field(min_length=1)] | None = None
    default_edges: Annotated[list[EdgeRef], Field(min_length=1)] | None = None
    geo_metadata: dict[str, GeoPoint] | None = None
    merchant_overrides: (
        dict[Annotated[str, Field(pattern=r"^[1-9][0-9]*$")], list[EdgeRef]] | None
    ) = None

    @model_validator(mode="after")
    def _one_form(self) -> VirtualEdgePolicyV1:
        form_a = self.edges is not None
        form_b = self.default_edges is not None and bool(self.geo_metadata)
        if form_a == form_b:
            raise ValueError("exactly one of edges, or default_edges + geo_metadata, is required")
        return self


POLICY_MODELS: dict[str, type[PolicyBase]] = {
    "alias_layout_policy_v1": AliasLayoutPolicyV1,
    "day_effect_policy_v1": DayEffectPolicyV1,
    "group_mix_regularizer_v1": GroupMixRegularizerV1,
    "route_rng_policy_v1": RouteRngPolicyV1,
    "virtual_edge_policy_v1": VirtualEdgePolicyV1,
}
POLICY_IDS: tuple[str, ...] = tuple(sorted(POLICY_MODELS))
