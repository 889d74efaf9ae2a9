"""Typed configuration of how a campaign judges its candidates and learns from them.

``evaluate``: the stability threshold and the hull E_hull is measured against (self-consistent by default, or a
reference table the user trusts, e.g. MP-20's DFT hull). ``feedback``: whether and how the next round learns
from this one. ``budget``: when a campaign stops spending relaxations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from conf.base import Strict


class EvaluateConfig(Strict):
    stability_threshold: float = Field(0.1, ge=0, description="E_hull at or below which a phase counts "
                                       "as stable, eV/atom.")
    reference_hull: Path | None = Field(
        None, description="A hull table (CSV/CSV.GZ, MP-20's format: a formula column such as pretty_formula and "
        "formation_energy_per_atom in eV/atom). When set, E_hull and 'stable' are measured against this fixed "
        "hull (elements at 0) instead of the campaign's self-consistent hull.")
    elemental_references: Path | dict[str, float] | None = Field(
        None, description="Energies per atom (eV/atom) that turn MLIP energies into formation energies against "
        "the reference hull: a JSON(.gz) of pymatgen ComputedEntry dicts keyed by element (matbench-discovery's "
        "MP elemental reference entries) or of numbers, or a mapping {El: eV/atom}. Default: the campaign's "
        "MLIP-relaxed elemental phases. Only used with reference_hull.")
    predictor: str | None = Field(
        "builtin", description="Property predictor (mean and sigma) for target properties an MLIP cannot give "
        "(band_gap): builtin (shipped, trained on MP-20 band gaps), a checkpoint path from matloop train-predictor, "
        "or a URL (with predictor_sha256); null: none. Used only when target.properties names its property.")
    predictor_sha256: str | None = Field(None, description="sha256 of the predictor file when it is a URL.")

    @field_validator("elemental_references")
    @classmethod
    def _numbers_for_elements(cls, v: Path | dict[str, float] | None) -> Path | dict[str, float] | None:
        if isinstance(v, dict):
            from pymatgen.core.periodic_table import Element

            bad = [el for el in v if not Element.is_valid_symbol(el)]
            if bad:
                raise ValueError(f"unknown element(s) {bad} in elemental_references")
        return v

    @model_validator(mode="after")
    def _refs_need_hull(self) -> EvaluateConfig:
        if self.elemental_references is not None and self.reference_hull is None:
            raise ValueError("elemental_references is only used with reference_hull; set evaluate.reference_hull")
        return self


class FeedbackConfig(Strict):
    enabled: bool = Field(True, description="false turns every form of learning off (the control arm of a "
                          "benchmark): arm weights stay at their prior, nothing is fine-tuned or re-conditioned, and an acquisition "
                          "chooses what to relax at random. "
                          "What was already proposed is still remembered, so proposals are not repeated.")
    temperature: float = Field(0.05, gt=0, description="Score = exp(-E_hull / T), T in eV/atom.")
    prior_strength: float = Field(1.0, gt=0, description="Pseudo-observations of the prior: an arm's weight is "
                                  "(k * m + sum of its scores) / (k + its observations), m the mean score of every "
                                  "observation of the campaign (the weight of untried arms). An arm that does "
                                  "better than the campaign rises above untried ones, a worse one falls below.")
    min_weight: float = Field(0.02, ge=0, le=1, description="No arm's weight falls below this (none is ruled out "
                              "for good, and a campaign whose every observation scored 0 still samples).")

    @model_validator(mode="before")
    @classmethod
    def _legacy_learning_rate(cls, data: object) -> object:
        """Configs stored before prior_strength had ``learning_rate`` (an EMA rate lr); its closest equivalent is
        k = (1 - lr) / lr pseudo-observations (lr 1: the last observations alone; lr 0.5: one)."""
        if isinstance(data, dict) and "learning_rate" in data:
            data = dict(data)
            lr = data.pop("learning_rate")
            if not isinstance(lr, int | float) or not 0 < lr <= 1:
                raise ValueError(f"learning_rate must be in (0, 1], got {lr!r} (it is now prior_strength)")
            data.setdefault("prior_strength", max((1 - lr) / lr, 1e-6))
        return data


class BudgetConfig(Strict):
    relaxations: int | None = Field(
        None, ge=1, description="Stop after this many candidate MLIP relaxations (failed ones count): the round "
        "that reaches it relaxes only what fits, later rounds are not run. Default: no limit (rounds decide).")


class AcquisitionConfig(Strict):
    """Which accepted candidates a round relaxes: all of them (``function: all``), or ``relax_per_round`` chosen
    by an acquisition function on a predicted E_hull with an uncertainty (an ensemble surrogate trained on the
    campaign's own relaxations). Generate more than you relax (``generator.n_per_round`` above
    ``relax_per_round``) to give the acquisition a choice."""

    function: Literal["all", "greedy", "lcb", "ei", "random"] = Field(
        "all", description="all: relax every accepted candidate; greedy: lowest predicted E_hull; lcb: lowest "
        "mean - kappa * sigma; ei: largest expected improvement below the stability threshold; random: uniform. "
        "With feedback.enabled false every function but all chooses at random (the choice must not learn).")
    relax_per_round: int | None = Field(None, ge=1, description="Candidates relaxed per round (required unless "
                                        "function is all).")
    surrogate: Literal["mlip", "formation_energy", "e_above_hull"] = Field(
        "mlip", description="How E_hull is predicted: mlip (one single-point energy of each proposal with the "
        "campaign's MLIP, no relaxation; sigma 0, so lcb and ei rank like greedy), or a random forest trained on "
        "the campaign's relaxations that learns formation_energy (measured against the hull at the candidate's "
        "composition) or e_above_hull directly (sigma: the trees' spread).")
    failed_e_above_hull: float | None = Field(
        None, ge=0, description="Teach the surrogate that a candidate whose relaxation failed (not converged, "
        "exploded, error) was this far above the hull (eV/atom), so it learns what fails; null leaves failures out.")
    inputs: Literal["relaxed", "proposed"] = Field(
        "relaxed", description="Structures the surrogate learns from for relaxed candidates: their relaxed cells, or "
        "the proposed cells (what it is asked about at choice time).")
    kappa: float = Field(1.0, ge=0, description="Exploration weight of lcb (in sigmas).")
    diversity: float = Field(0.05, ge=0, description="Acquisition penalty (eV/atom) per candidate of the same "
                             "composition already chosen this round, so one formula does not take the budget.")
    repeat_penalty: float = Field(0.05, ge=0, description="Acquisition penalty (eV/atom) per earlier relaxation of "
                                  "the same composition in the campaign, so later rounds do not re-relax into what "
                                  "they already found (not under random choice); 0 off.")
    ensemble: int = Field(32, ge=2, le=512, description="Trees of the surrogate's random forest (sigma is "
                          "their spread).")
    target_weight: float = Field(
        0.2, ge=0, description="With a target an MLIP cannot give (target.properties band_gap) and a property "
        "predictor (evaluate.predictor): this penalty (eV/atom) times the predicted probability of missing the "
        "targets is subtracted from every candidate's acquisition value (not for random choice); 0 ignores them.")

    @model_validator(mode="after")
    def _needs_a_count(self) -> AcquisitionConfig:
        if self.function != "all" and self.relax_per_round is None:
            raise ValueError(f"acquisition.function {self.function!r} needs acquisition.relax_per_round "
                             "(how many accepted candidates a round relaxes)")
        return self


class LearnConfig(Strict):
    """Fine-tuning a checkpoint generator (diffusion, GAN) inside the campaign, every round."""

    fine_tune: bool = Field(True, description="Fine-tune the campaign's diffusion/GAN checkpoint after every round on "
                            "its relaxed structures (off with feedback.enabled: false, and for substitution/random).")
    structures: int = Field(64, ge=1, description="Structures per fine-tuning epoch, drawn with replacement from the "
                            "campaign's converged relaxations with weight exp(-E_hull / feedback.temperature) (best "
                            "label: lab > DFT-corrected > MLIP).")
    epochs: int = Field(2, ge=1, le=100, description="Fine-tuning epochs per round (bounds the cost).")
    replay: int = Field(64, ge=0, description="Seed structures of the campaign replayed so the model does not forget "
                        "its base distribution (0: none).")
    replay_fraction: float = Field(0.5, ge=0, lt=1, description="Share of each fine-tuning batch from the replay.")
    condition_update: bool = Field(True, description="Diffusion/GAN: narrow the next round's property targets to "
                                   "where the campaign's hits are (an e_above_hull target becomes a formation-energy "
                                   "range around the hits'); models that do not condition on a property say so in "
                                   "the round's generator notes.")
    condition_margin: float = Field(0.2, ge=0, description="Widening of the hits' span, in the property's unit "
                                    "(eV/atom for energies, eV for band gaps).")
    condition_min_hits: int = Field(2, ge=1, description="Hits needed before the targets move.")
