"""The diffusion generator (models/ CSPNet DDPM): ancestral DDPM + predictor-corrector sampling with
classifier-free guidance toward the round's property targets."""

from __future__ import annotations

from conf.generator import DiffusionOptions
from tasks.generators.learned import CheckpointGenerator


class DiffusionGenerator(CheckpointGenerator):
    name = kind = "diffusion"
    options: DiffusionOptions

    def settings(self) -> str:
        o = self.options
        return f":steps{o.steps}:pc{o.corrector_steps}:w{o.guidance_scale}"

    def draw(self, model, ckpt, n, seed, elements, targets, max_atoms):
        from models.api import sample_structures
        from models.sampler import SamplerConfig

        o = self.options
        cfg = SamplerConfig(steps=o.steps, corrector_steps=o.corrector_steps, step_lr=o.step_lr,
                            guidance_scale=o.guidance_scale)
        return sample_structures(model, ckpt, n, seed, cfg, elements=elements, targets=targets, max_atoms=max_atoms)
