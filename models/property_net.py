"""A deep ensemble regressor of one scalar property with a predictive uncertainty.

Lakshminarayanan et al. (NeurIPS 2017): every member is an MLP that outputs a mean and a variance and is trained
with the Gaussian negative log-likelihood from its own initialisation; the ensemble's prediction is a Gaussian
mixture collapsed to its mean and variance (members' mean variance + the variance of their means), so the sigma
grows both where the data are noisy (aleatoric) and where the members disagree (epistemic, away from the data).
"""

from __future__ import annotations

import torch
from torch import nn


class PropertyEnsemble(nn.Module):
    """``n_members`` MLPs over ``n_features`` standardised inputs, each returning (mean, variance) of the
    standardised target."""

    def __init__(self, n_features: int, n_members: int = 5, hidden_dim: int = 128, num_layers: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if n_features < 1 or n_members < 1 or hidden_dim < 1 or num_layers < 1:
            raise ValueError(f"PropertyEnsemble needs positive sizes (features {n_features}, members {n_members}, "
                             f"hidden {hidden_dim}, layers {num_layers})")
        self.n_features, self.n_members = n_features, n_members
        self.members = nn.ModuleList(self._member(n_features, hidden_dim, num_layers, dropout)
                                     for _ in range(n_members))

    @staticmethod
    def _member(n_features: int, hidden_dim: int, num_layers: int, dropout: float) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.SiLU(), nn.Dropout(dropout)]
            width = hidden_dim
        layers.append(nn.Linear(width, 2))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member means and variances, each of shape (n_members, batch)."""
        out = torch.stack([m(x) for m in self.members])  # (members, batch, 2)
        mean, raw = out[..., 0], out[..., 1]
        return mean, nn.functional.softplus(raw) + 1e-6

    def loss(self, x: torch.Tensor, y: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
        """Sum over members of their mean Gaussian negative log-likelihood on (x, y). ``beta`` > 0 weights each
        point's term by its (detached) predicted variance to the power ``beta`` (beta-NLL, Seitzer et al., ICLR
        2022): plain NLL (beta 0) lets a point given a large variance stop pulling on the mean, so hard regions
        (wide-gap oxides among mostly metals) stay underfitted; beta 1 gives the mean squared error's gradient."""
        mean, var = self(x)
        nll = nn.functional.gaussian_nll_loss(mean, y.expand_as(mean), var, reduction="none")
        if beta:
            nll = nll * var.detach() ** beta
        return nll.mean(dim=1).sum()

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ensemble's mean and standard deviation, each of shape (batch,)."""
        mean, var = self(x)
        mu = mean.mean(dim=0)
        total = var.mean(dim=0) + mean.var(dim=0, unbiased=False)
        return mu, total.sqrt()
