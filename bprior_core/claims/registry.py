"""Every claim, once: its id, the function that judges it, whether it is a positive control
(judged first, at 95 %, outside the Holm family) or one of the family, and which controls gate
it (where a control is not supported, its verdict is marked uninformative). A new claim is a
judging function in a module of its own and one line here; `evaluate` reads nothing else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..vocabulary import CONTROL_ID, COVARIANCE_ID, REFERENCE_ID
from .controls import claim_control, claim_covariance
from .inference import (
    claim_bayes_boost,
    claim_bayes_interaction,
    claim_data_efficiency,
    claim_isotropic,
    claim_loss_surface,
)
from .rank import claim_rank
from .reference import claim_reference
from .scale import claim_scale

# the shapes of a claim's evidence (what the report and the figures read)
RANK_EVIDENCE, SCALE_EVIDENCE, PAIRS_EVIDENCE = "rank", "scale", "pairs"


@dataclass(frozen=True)
class ClaimSpec:
    """One claim: `judge(records, metric, margin, level, convention) -> claim dict`;
    `control`: a positive control rather than a claim of the family; `gated_by`: the controls
    whose failure makes its verdict uninformative; `evidence`: the shape of its evidence (parts
    by rank, by prior source and convention, or paired comparisons over sizes)."""

    id: str
    judge: Callable[..., dict]
    control: bool = False
    gated_by: tuple[str, ...] = ()
    evidence: str = PAIRS_EVIDENCE


# in the order the report lists them: the controls, then the family
CLAIMS = (
    ClaimSpec(CONTROL_ID, claim_control, control=True),
    ClaimSpec(COVARIANCE_ID, claim_covariance, control=True),
    ClaimSpec("C1", claim_rank, gated_by=(COVARIANCE_ID,), evidence=RANK_EVIDENCE),
    ClaimSpec("C2", claim_scale, evidence=SCALE_EVIDENCE),
    ClaimSpec("C3", claim_loss_surface, gated_by=(CONTROL_ID,)),
    ClaimSpec("C4", claim_bayes_boost, gated_by=(CONTROL_ID,)),
    ClaimSpec("C4b", claim_bayes_interaction, gated_by=(CONTROL_ID,)),
    ClaimSpec(REFERENCE_ID, claim_reference),
    ClaimSpec("C5", claim_data_efficiency, gated_by=(CONTROL_ID,)),
    ClaimSpec("H1", claim_isotropic, gated_by=(CONTROL_ID, COVARIANCE_ID)),
)
CONTROLS = tuple(spec for spec in CLAIMS if spec.control)
FAMILY = tuple(spec for spec in CLAIMS if not spec.control)
FAMILY_IDS = tuple(spec.id for spec in FAMILY)  # one Holm family


def gated_by(control_id: str) -> tuple[str, ...]:
    """The ids of the claims a control gates."""
    return tuple(spec.id for spec in CLAIMS if control_id in spec.gated_by)


NEEDS_CONTROL = gated_by(CONTROL_ID)  # about a prior's effect on the inference testbed
NEEDS_COVARIANCE = gated_by(COVARIANCE_ID)  # about the learned covariance


def spec_of(claim_id: str) -> ClaimSpec | None:
    """The registry's spec of a claim id (None for an id it does not know, e.g. from an older
    claims.json)."""
    return next((spec for spec in CLAIMS if spec.id == claim_id), None)


def evidence_kind(claim_id: str) -> str:
    """The shape of a claim's evidence (`PAIRS_EVIDENCE` for an unknown id)."""
    spec = spec_of(claim_id)
    return spec.evidence if spec else PAIRS_EVIDENCE


def is_control(claim_id: str) -> bool:
    """Whether a claim id is a positive control's."""
    spec = spec_of(claim_id)
    return bool(spec and spec.control)
