"""Configuration of the conditional crystal GAN (:mod:`models.gan`): its conditioning, and its architecture,
optimiser and loss weights as three groups. Checkpoints and training configs store the fields flat."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from models.conditioning import cond_dim
from models.strict import Strict


class GANArchitecture(Strict):
    """Shapes of the generator and the critic, and how the generator draws species."""

    latent_dim: int = Field(64, ge=1, description="Size of the crystal latent and of each atom's latent.")
    hidden_dim: int = Field(128, ge=8, description="Width of the generator's and the critic's layers.")
    generator_layers: int = Field(3, ge=1, description="Transformer layers over the atoms of a crystal.")
    heads: int = Field(4, ge=1, description="Attention heads of the generator's transformer.")
    critic_layers: int = Field(3, ge=1, description="CSPNet message-passing layers of the critic.")
    num_freqs: int = Field(8, ge=1, description="Fourier frequencies of the critic's fractional-coordinate "
                           "features.")
    max_atoms: int = Field(200, ge=1, description="Largest atom count the generator embeds.")
    distance_rbf: int = Field(0, ge=0, description="Gaussians expanding interatomic distances for a distance "
                              "message step in the critic (0: off): a position signal that changes smoothly as "
                              "atoms move.")
    batch_spread: bool = Field(True, description="The critic sees the batch's feature spread (minibatch std).")
    gumbel_tau: float = Field(1.0, gt=0, description="Temperature of the straight-through Gumbel-softmax.")
    species_noise: float = Field(1.0, ge=0, description="Scale of the Gumbel noise added to the species logits "
                                 "(1: each atom's species drawn from softmax(logits); 0: the argmax, so every "
                                 "element choice comes from the latents and a crystal's sites can be correlated).")


class GANOptimiser(Strict):
    """Adam for each player (two time-scale update rule: the generator may learn slower than the critic)."""

    generator_lr: float = Field(1e-4, gt=0, description="Generator learning rate.")
    critic_lr: float = Field(4e-4, gt=0, description="Critic learning rate.")
    betas: tuple[float, float] = Field((0.0, 0.9), description="Adam's betas for both players.")


class GANLossWeights(Strict):
    """The terms of the two losses besides the hinge, with their weights (0 turns a term off)."""

    aux_weight: float = Field(0.2, ge=0, description="Auxiliary property regression of the critic, which the "
                              "generator is also trained to satisfy (larger values push generated cells to "
                              "extremes of the property).")
    feature_matching: float = Field(1.0, ge=0, description="Feature matching (Salimans et al. 2016): the generator "
                                    "matches the mean critic features of real crystals.")
    lattice_matching: float = Field(1.0, ge=0, description="Matching the batch mean and spread of the lattice "
                                    "(model units) to the real batch's.")
    species_matching: float = Field(1.0, ge=0, description="L1 gap between the batch's element frequencies and "
                                    "the real batch's.")
    repulsion: float = Field(1.0, ge=0, description="Penalty on generated atom pairs closer than min_distance "
                             "(a validity prior against stacked atoms).")
    min_distance: float = Field(1.0, ge=0, description="Closest pair distance the repulsion allows, Å.")
    structure_matching: float = Field(0.0, ge=0, description="Matching the batch mean and spread of each "
                                      "crystal's smoothed radial distribution (``gan_nets.radial_profile``, "
                                      "distances in the data's atomic spacing) to the real batch's.")
    profile_bins: int = Field(16, ge=2, description="Gaussians exp(-((d - c) / w)^2) of the radial distribution, "
                              "centres c evenly spaced from 0 to profile_max, w their spacing.")
    profile_max: float = Field(2.0, gt=0, description="Longest distance of the radial distribution, in the "
                               "data's mean atomic spacing.")
    r1_gamma: float = Field(0.0, ge=0, description="R1 penalty (Mescheder et al. 2018): gamma/2 times the squared "
                            "gradient of the critic's score at real crystals (fractional coordinates and lattice), "
                            "per crystal.")
    instance_noise: float = Field(0.0, ge=0, description="Std of Gaussian noise on the fractional coordinates "
                                  "the critic sees, real and generated alike (so their supports overlap).")


_GROUPS = {"architecture": GANArchitecture, "optimiser": GANOptimiser, "loss": GANLossWeights}
_FLAT_ORDER = ("latent_dim", "hidden_dim", "generator_layers", "heads", "critic_layers", "num_freqs", "max_atoms",
               "properties", "condition_on_elements", "cond_drop_prob", "generator_lr", "critic_lr", "betas",
               "gumbel_tau", "species_noise", "aux_weight", "feature_matching", "repulsion", "min_distance",
               "distance_rbf", "batch_spread", "instance_noise", "species_matching", "r1_gamma", "lattice_matching",
               "structure_matching", "profile_bins", "profile_max")
"""The fields in the order checkpoints and training configs have always stored them, flat."""


class GANConfig(Strict):
    """The GAN's conditioning, architecture, optimiser and loss weights, stored in every checkpoint.

    Stored flat (``model_config`` of a checkpoint, ``model:`` of a training config: ``hidden_dim: 128``, not
    ``architecture: {hidden_dim: 128}``), so a checkpoint's hash, which covers its config, is what it was before
    the fields were grouped; grouped input is accepted too.
    """

    properties: tuple[str, ...] = Field((), description="Property columns the model is conditioned on.")
    condition_on_elements: bool = Field(True, description="Condition on the chemical system (element multi-hot).")
    cond_drop_prob: float = Field(0.15, ge=0, le=1, description="Probability of dropping each condition in "
                                  "training (so the same model also samples unconditionally).")
    architecture: GANArchitecture = GANArchitecture()
    optimiser: GANOptimiser = GANOptimiser()
    loss: GANLossWeights = GANLossWeights()

    @model_validator(mode="before")
    @classmethod
    def _group(cls, data: Any) -> Any:
        """Flat fields go into their group (a field given both flat and grouped is an error)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for group, model in _GROUPS.items():
            flat = {k: out.pop(k) for k in list(out) if k in model.model_fields}
            if not flat:
                continue
            given = out.get(group, {})
            if isinstance(given, BaseModel):
                given = given.model_dump()
            both = sorted(set(flat) & set(given))
            if both:
                raise ValueError(f"{', '.join(both)} given both flat and under {group}")
            out[group] = {**given, **flat}
        return out

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        nested = handler(self)
        flat = {k: v for k, v in nested.items() if k not in _GROUPS}
        for group in _GROUPS:
            flat.update(nested[group])
        return {k: flat[k] for k in _FLAT_ORDER}

    def updated(self, **fields: Any) -> GANConfig:
        """A validated copy with ``fields`` (flat names, e.g. ``r1_gamma=10``) changed; ``model_copy(update=...)``
        would neither validate them nor find their group."""
        return GANConfig.model_validate({**self.model_dump(), **fields})

    def cond_dim(self) -> int:
        return cond_dim(self)
