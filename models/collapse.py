"""Mode-collapse monitor for adversarial training: uniqueness, diversity and coverage of samples.

All three are measured in a cheap feature space that, like structure matching, ignores small cell-size noise
and rotations: element fractions, a smoothed histogram of interatomic distances in units of the expected
cell size (nearest image along each axis), and atom count / 10. A check costs one generator pass and a few
distance matrices rather than structure matching:

* uniqueness: share of samples with no earlier sample closer than ``duplicate_distance``, judged against
  the same share for as many data crystals (single-element sets such as Carbon-24 differ only in their
  distance histograms and read about 0.44 themselves; Perov-5 reads 1.0);
* diversity: mean pairwise distance of the samples over that of as many data crystals;
* coverage (logged; a floor is optional): share of data crystals with a sample closer than the data's own
  median nearest-neighbour distance (one half of the data against the other), next to the same figure for
  the data itself (about 0.5 by construction). An early generator has low coverage without having collapsed,
  so by default it does not decide health.

A collapsed generator repeats itself (uniqueness falls below a share of the data's) or shrinks onto a corner
of the data (diversity falls); after ``warmup`` epochs either below its floor makes the report unhealthy, and
the trainer restarts from the last healthy state (:meth:`models.training.Trainer.fit`).
"""

from __future__ import annotations

import torch
from pydantic import Field

from models.crystal import MAX_Z, CrystalBatch, Normalizer
from models.data import CrystalDataset
from models.strict import Strict
from models.training import MonitorReport, Trainer


class CollapseConfig(Strict):
    every: int = Field(5, ge=0, description="Epochs between checks (0: never).")
    n_samples: int = Field(256, ge=8, description="Samples (and reference crystals) per check.")
    warmup: int = Field(10, ge=0, description="Epochs before a report may be unhealthy.")
    min_uniqueness: float = Field(0.5, ge=0, le=1, description="Floor on sample uniqueness / the data's own.")
    min_diversity_ratio: float = Field(0.5, ge=0, description="Floor on sample diversity / the data's.")
    min_coverage_ratio: float = Field(0.0, ge=0, description="Floor on coverage / the data's own (0: logged only).")
    duplicate_distance: float = Field(0.1, gt=0, description="Feature distance of duplicates.")
    coverage_radius: float | None = Field(None, gt=0, description="Feature distance that covers a reference "
                                          "crystal (default: the data's median nearest-neighbour distance, at "
                                          "least duplicate_distance).")
    max_restarts: int = Field(3, ge=0)
    restart_lr_factor: float = Field(0.5, gt=0, le=1, description="Learning rates x this per restart so far.")
    seed: int = 1234


def crystal_features(b: CrystalBatch, normalizer: Normalizer, bins: int = 16) -> torch.Tensor:
    """(B, Z + 1 + bins + 1): element fractions, distance histogram per atom, atom count / 10."""
    from models.gan_nets import pair_distances

    lattice = normalizer.lattice_to_model(b.lattice.double(), b.num_atoms).float()
    comp = torch.zeros(b.num_graphs, MAX_Z + 1)
    comp.index_put_((b.batch, b.species), torch.ones_like(b.species, dtype=torch.float32), accumulate=True)
    comp = comp / b.num_atoms[:, None].float()
    src, dst = b.edges()
    dist = pair_distances(b.frac.float(), lattice, b.batch, src, dst)
    centres = torch.linspace(0.0, 1.0, bins)
    soft = torch.exp(-((dist[:, None] - centres) ** 2) / (2 * (0.5 / bins) ** 2))
    hist = torch.zeros(b.num_graphs, bins).index_add_(0, b.batch[src], soft) / b.num_atoms[:, None].float()
    return torch.cat([comp, hist / hist.sum(1, keepdim=True).clamp(min=1e-6),
                      b.num_atoms[:, None].float() / 10], dim=-1)


def uniqueness(x: torch.Tensor, tol: float) -> float:
    d = torch.cdist(x, x)
    earlier = torch.tril(d < tol, diagonal=-1)
    return float((~earlier.any(1)).float().mean())


def diversity(x: torch.Tensor) -> float:
    n = x.shape[0]
    return float(torch.cdist(x, x).sum() / max(n * (n - 1), 1))


def coverage(reference: torch.Tensor, samples: torch.Tensor, radius: float) -> float:
    return float((torch.cdist(reference, samples).min(1).values < radius).float().mean())


class CollapseMonitor:
    """Callable health check for :meth:`Trainer.fit`: samples from the EMA model and scores them."""

    def __init__(self, data: CrystalDataset, cfg: CollapseConfig | None = None) -> None:
        cfg = cfg or CollapseConfig()
        self.cfg, self.every, self.max_restarts = cfg, cfg.every, cfg.max_restarts
        self.restart_lr_factor = cfg.restart_lr_factor
        gen = torch.Generator().manual_seed(cfg.seed)
        order = torch.randperm(len(data), generator=gen)
        half = min(cfg.n_samples, len(data) // 2) or 1
        ref, other = data.batch(order[:half].tolist()), data.batch(order[half:2 * half].tolist() or [0])
        self.reference = crystal_features(ref, data.normalizer)
        self.num_atoms = ref.num_atoms
        other_x = crystal_features(other, data.normalizer)
        median = float(torch.cdist(self.reference, other_x).min(1).values.median())
        self.radius = cfg.coverage_radius or max(median, cfg.duplicate_distance)
        self.data_coverage = coverage(self.reference, other_x, self.radius)
        self.data_uniqueness = uniqueness(self.reference, cfg.duplicate_distance)
        self.data_diversity = diversity(self.reference)

    def __call__(self, trainer: Trainer) -> MonitorReport:
        model = trainer.ema.module
        counts = self.num_atoms.repeat(self.cfg.n_samples // len(self.num_atoms) + 1)[: self.cfg.n_samples]
        batch = model.sample(counts, torch.Generator().manual_seed(self.cfg.seed))
        x = crystal_features(batch, model.normalizer)
        uniq = uniqueness(x, self.cfg.duplicate_distance)
        uniq_ratio = uniq / max(self.data_uniqueness, 1e-6)
        cov = coverage(self.reference, x, self.radius)
        ratio = cov / max(self.data_coverage, 1e-6)
        spread = diversity(x) / max(self.data_diversity, 1e-6)
        metrics = {"uniqueness": uniq, "uniqueness_ratio": uniq_ratio, "diversity_ratio": spread, "coverage": cov,
                   "coverage_ratio": ratio}
        reasons = []
        if trainer.epoch >= self.cfg.warmup:
            if uniq_ratio < self.cfg.min_uniqueness:
                reasons.append(f"uniqueness {uniq:.2f} is {uniq_ratio:.2f} of the data's "
                               f"{self.data_uniqueness:.2f} (< {self.cfg.min_uniqueness})")
            if spread < self.cfg.min_diversity_ratio:
                reasons.append(f"diversity {spread:.2f} of the data's (< {self.cfg.min_diversity_ratio})")
            if ratio < self.cfg.min_coverage_ratio:
                reasons.append(f"coverage {cov:.2f} is {ratio:.2f} of the data's (< {self.cfg.min_coverage_ratio})")
        return MonitorReport(metrics=metrics, healthy=not reasons, reason="; ".join(reasons),
                             judged=trainer.epoch >= self.cfg.warmup)
