"""Generators backed by a trained checkpoint (diffusion, GAN) behind the campaign's Generator interface.

Conditions map onto the model's conditioning: the chemical system becomes a hard element mask (no sample
leaves it) and, if the model was trained with it, an element condition; property targets the model knows
are sampled inside their ranges. Feedback re-weights compositions (arms) by importance resampling of an
oversampled batch. Subclasses say which model family they load and how they sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymatgen.core import Structure

from tasks.candidate import Candidate, Provenance
from tasks.errors import GeneratorError
from tasks.generators.base import ArmWeights
from tasks.results import Conditions, RoundFeedback


class CheckpointGenerator:
    """Shared sample/update logic; ``options`` has at least ``checkpoint`` and ``oversample``."""

    name = ""
    kind = ""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.arms = ArmWeights()
        self._model = self._ckpt = None
        self._notes: dict = {}

    def _load(self):
        if self._model is None:
            from models.api import load_model
            from tasks.generators.fetch import resolve_checkpoint

            path = resolve_checkpoint(self.options.checkpoint, self.options.checkpoint_sha256, self.kind)
            if not path.is_file():
                raise GeneratorError(f"{self.name} checkpoint not found: {path}")
            try:
                self._model, self._ckpt = load_model(path, kind=self.kind)
            except ValueError as exc:
                raise GeneratorError(f"generator {self.name!r}: {exc}") from exc
        return self._model, self._ckpt

    def settings(self) -> str:
        """Sampling settings that change the output (part of :meth:`identity`)."""
        return ""

    def identity(self) -> str:
        _, ckpt = self._load()
        return f"{self.name}:{ckpt['hash']}{self.settings()}"

    def notes(self) -> dict:
        """Property targets the checkpoint cannot condition on (sampled without them, never silently)."""
        return dict(self._notes)

    def update(self, feedback: RoundFeedback) -> None:
        self.arms.update(feedback)

    def draw(self, model, ckpt: dict, n: int, seed: int, elements: list[str], targets: dict,
             max_atoms: int) -> list[Structure]:
        """``n`` structures from the model (subclasses pick the sampler)."""
        raise NotImplementedError

    def sample(self, n: int, conditions: Conditions, seed: int) -> list[Candidate]:
        from tasks.mlip import float32_models

        with float32_models():  # float32 whatever an MLIP left as torch's default dtype
            return self._sample(n, conditions, seed)

    def _sample(self, n: int, conditions: Conditions, seed: int) -> list[Candidate]:
        model, ckpt = self._load()
        targets = {name: ((t.value, t.value) if t.value is not None else (t.min, t.max))
                   for name, t in conditions.property_targets.items() if name in model.cfg.properties}
        ignored = sorted(set(conditions.property_targets) - set(targets))
        self._notes = ({"targets_not_conditioned": ignored, "model_conditions_on": list(model.cfg.properties)}
                       if ignored else {})
        drawn = self.draw(model, ckpt, int(np.ceil(n * self.options.oversample)), seed,
                          list(conditions.chemical_system), targets, conditions.max_atoms)
        if not conditions.include_subsystems:
            full = set(conditions.chemical_system)
            drawn = [s for s in drawn if {el.symbol for el in s.composition.elements} == full]
        if not drawn:
            return []
        formulas = [s.composition.reduced_formula for s in drawn]
        keep = self.arms.choose(np.random.default_rng(seed), self.arms.scores(formulas, formulas), n)
        identity, conditions_hash = self.identity(), conditions.digest()
        return [Candidate.create(drawn[i], Provenance(
            generator=self.name, generator_identity=identity, round_index=conditions.round_index, arm=formulas[i],
            key=f"{formulas[i]}|seed{seed}|{i}", conditions_hash=conditions_hash,
            details={"checkpoint": ckpt["hash"], "targets": {k: list(v) for k, v in targets.items()}}))
            for i in sorted(keep)]
