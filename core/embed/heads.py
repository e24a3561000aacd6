"""The embedding head that training adds on top of a backbone: the feature map pooled by GeM
with a learned exponent, dropout, a linear projection and batch normalisation (the "BN-neck"
of re-identification networks, which keeps the embedding centred for cosine search).

It lives with the embedder, not with training, because every command that loads a trained
model (``--weights artifacts/models/NAME/model.pt``) rebuilds it from its ``HeadConfig``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from core.embed.pooling import gem


@dataclass(frozen=True)
class HeadConfig:
    """in_channels: channels of the backbone's map; dim: embedding size; gem_p: the GeM
    exponent (its start when ``learn_p``); dropout: before the projection, in training only."""

    in_channels: int
    dim: int = 512
    gem_p: float = 3.0
    dropout: float = 0.2
    learn_p: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class GeM(nn.Module):
    """GeM pooling whose exponent is a parameter (Radenović et al.: learned p ≈ 3), or fixed."""

    def __init__(self, p: float = 3.0, learn: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return gem(fmap, self.p.clamp(min=1.0))


class EmbeddingHead(nn.Module):
    """[B, C, h, w] feature map -> [B, dim] embedding (not normalised; the embedder and the
    metric losses normalise it)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.pool = GeM(config.gem_p, config.learn_p)
        self.dropout = nn.Dropout(config.dropout)
        self.project = nn.Linear(config.in_channels, config.dim, bias=False)
        self.norm = nn.BatchNorm1d(config.dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.embed_pooled(self.pool(fmap))

    def embed_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B, in_channels] already pooled map -> [B, dim]: with a fixed exponent and a frozen
        backbone, training pools every view once and only this part learns."""
        return self.norm(self.project(self.dropout(pooled)))
