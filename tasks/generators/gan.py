"""The conditional GAN generator (models/gan.py): one generator pass per batch of crystals, conditioned on
the round's property targets and chemical system (species masked to it)."""

from __future__ import annotations

from conf.generator import GANOptions
from tasks.generators.learned import CheckpointGenerator


class GANGenerator(CheckpointGenerator):
    name = kind = "gan"
    options: GANOptions

    def draw(self, model, ckpt, n, seed, elements, targets, max_atoms):
        from models.api import sample_structures

        return sample_structures(model, ckpt, n, seed, elements=elements, targets=targets, max_atoms=max_atoms,
                                 batch_size=self.options.batch_size)
