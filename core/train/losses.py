"""Training objectives over the embedding head's output, each an ``nn.Module`` called as
``loss(embeddings [B, D], labels [B]) -> LossOutput``:

- ``softmax``: a linear classifier and cross-entropy with label smoothing, as the seed systems
  trained (their descriptor is a layer below the classifier);
- ``cosface`` / ``arcface``: the same classifier on L2-normalised embeddings and weights, with an
  additive cosine margin (CosFace, Wang et al. 2018) or angular margin (ArcFace, Deng et al.
  2019), which pulls each class together on the sphere that cosine search compares on;
- ``triplet``: batch-hard triplets (Hermans et al. 2017): for each anchor its farthest positive
  and nearest negative in the batch, hinge at ``margin`` on cosine distance; needs batches of
  several images per class (``core.train.trainer`` samples them).

``predict`` gives class scores where the loss has a classifier (None for triplet).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("softmax", "cosface", "arcface", "triplet")


@dataclass
class LossOutput:
    loss: torch.Tensor
    correct: int                    # batch items classified right (triplet: nearest neighbour of its class)


class SoftmaxLoss(nn.Module):
    def __init__(self, dim: int, n_classes: int, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, n_classes)
        self.label_smoothing = label_smoothing

    def predict(self, emb: torch.Tensor) -> torch.Tensor:
        return self.classifier(emb)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        logits = self.predict(emb)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return LossOutput(loss, int((logits.argmax(1) == labels).sum()))


class MarginLoss(nn.Module):
    """CosFace (``kind`` "cosface": s·(cos θ − m) for the true class) or ArcFace ("arcface":
    s·cos(θ + m)); ``scale`` s, ``margin`` m."""

    def __init__(self, dim: int, n_classes: int, kind: str, margin: float, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.kind, self.margin, self.scale = kind, margin, scale

    def predict(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb, dim=1) @ F.normalize(self.weight, dim=1).T

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        cos = self.predict(emb)
        target = cos.gather(1, labels[:, None])
        if self.kind == "cosface":
            adjusted = target - self.margin
        else:
            theta = torch.acos(target.clamp(-1 + 1e-6, 1 - 1e-6))
            # past pi - m the angle would wrap round; there ArcFace falls back to CosFace's penalty
            adjusted = torch.where(theta < math.pi - self.margin, torch.cos(theta + self.margin),
                                   target - self.margin * math.sin(self.margin))
        logits = cos.scatter(1, labels[:, None], adjusted) * self.scale
        return LossOutput(F.cross_entropy(logits, labels), int((cos.argmax(1) == labels).sum()))


class TripletLoss(nn.Module):
    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin = margin

    def predict(self, emb: torch.Tensor) -> None:
        return None

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        z = F.normalize(emb, dim=1)
        dist = 1.0 - z @ z.T                                          # cosine distance
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
        positive = same & ~eye
        hardest_pos = dist.masked_fill(~positive, float("-inf")).amax(1)
        hardest_neg = dist.masked_fill(same, float("inf")).amin(1)
        valid = positive.any(1) & (~same).any(1)
        if not bool(valid.any()):
            raise ValueError("a triplet batch needs at least two images of a class and one of another")
        loss = F.relu(hardest_pos - hardest_neg + self.margin)[valid].mean()
        nearest = dist.masked_fill(eye, float("inf")).argmin(1)
        return LossOutput(loss, int((labels[nearest] == labels).sum()))


def create_loss(name: str, dim: int, n_classes: int, margin: float | None = None, scale: float = 30.0) -> nn.Module:
    """The loss ``name`` (``LOSSES``); ``margin`` None takes its usual value (CosFace 0.35,
    ArcFace 0.5, triplet 0.1)."""
    if name == "softmax":
        return SoftmaxLoss(dim, n_classes)
    if name in ("cosface", "arcface"):
        return MarginLoss(dim, n_classes, name, margin if margin is not None else (0.35 if name == "cosface" else 0.5),
                          scale)
    if name == "triplet":
        return TripletLoss(margin if margin is not None else 0.1)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
