"""The diffusion generator (models/ CSPNet DDPM) behind the campaign's Generator interface.

Conditions map onto the model's conditioning: the chemical system becomes a hard element mask (no sample
leaves it) and, if the model was trained with it, an element condition; property targets the model knows
are sampled inside their ranges and guided with classifier-free guidance. Feedback re-weights
compositions (arms) by importance resampling of an oversampled batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conf.schema import DiffusionOptions
from tasks.candidate import Candidate, Provenance
from tasks.errors import GeneratorError
from tasks.generators.base import ArmWeights
from tasks.results import Conditions, RoundFeedback


class DiffusionGenerator:
    name = "diffusion"

    def __init__(self, options: DiffusionOptions) -> None:
        self.options = options
        self.arms = ArmWeights()
        self._model = self._ckpt = None

    def _load(self):
        if self._model is None:
            from models.api import load_diffusion

            path = Path(self.options.checkpoint)
            if not path.is_file():
                raise GeneratorError(f"diffusion checkpoint not found: {path}")
            self._model, self._ckpt = load_diffusion(path)
        return self._model, self._ckpt

    def identity(self) -> str:
        _, ckpt = self._load()
        o = self.options
        return f"diffusion:{ckpt['hash']}:steps{o.steps}:pc{o.corrector_steps}:w{o.guidance_scale}"

    def update(self, feedback: RoundFeedback) -> None:
        self.arms.update(feedback)

    def sample(self, n: int, conditions: Conditions, seed: int) -> list[Candidate]:
        from models.api import sample_structures
        from models.sampler import SamplerConfig

        model, ckpt = self._load()
        o = self.options
        targets = {name: ((t.value, t.value) if t.value is not None else (t.min, t.max))
                   for name, t in conditions.property_targets.items() if name in model.cfg.properties}
        cfg = SamplerConfig(steps=o.steps, corrector_steps=o.corrector_steps, step_lr=o.step_lr,
                            guidance_scale=o.guidance_scale)
        drawn = sample_structures(model, ckpt, int(np.ceil(n * o.oversample)), seed, cfg,
                                  elements=conditions.chemical_system, targets=targets,
                                  max_atoms=conditions.max_atoms)
        if not conditions.include_subsystems:
            full = set(conditions.chemical_system)
            drawn = [s for s in drawn if {el.symbol for el in s.composition.elements} == full]
        if not drawn:
            return []
        formulas = [s.composition.reduced_formula for s in drawn]
        keep = self.arms.choose(np.random.default_rng(seed), np.array([self.arms.weight(f) for f in formulas]), n)
        identity, conditions_hash = self.identity(), conditions.digest()
        return [Candidate.create(drawn[i], Provenance(
            generator=self.name, generator_identity=identity, round_index=conditions.round_index, arm=formulas[i],
            key=f"{formulas[i]}|seed{seed}|{i}", conditions_hash=conditions_hash,
            details={"checkpoint": ckpt["hash"], "targets": {k: list(v) for k, v in targets.items()}}))
            for i in sorted(keep)]
