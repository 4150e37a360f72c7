"""Sample fidelity from features: Fréchet distance (Heusel et al. 2017), Intra-FID (Miyato & Koyama 2018) and the
Inception Score (Salimans et al. 2016), all through torchmetrics on features computed elsewhere (an Inception
network's pool features and logits, or a domain classifier's penultimate features and logits). The metrics compute
on the features they are given and never sync across processes: under DDP the audits run on rank 0 alone."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore


class _Given(nn.Module):
    """A 'feature extractor' that returns its input: the features were computed before."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def _features(x: Tensor, name: str) -> Tensor:
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be (n, d) features with n >= 2; got {tuple(x.shape)}")
    return x.double()


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two (n, d) feature sets (torchmetrics'
    ``FrechetInceptionDistance`` with the given features)."""
    real, fake = _features(real, "real"), _features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} and {fake.shape[1]}")
    metric = FrechetInceptionDistance(feature=_Given(real.shape[1]), reset_real_features=True, sync_on_compute=False)
    metric.set_dtype(torch.float64)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def intra_fid(real: Tensor, real_labels: Tensor, fake: Tensor, fake_labels: Tensor) -> float:
    """FID per class, averaged over the classes (Miyato & Koyama 2018); every class of ``real_labels`` needs at
    least two real and two generated samples."""
    classes = torch.unique(real_labels)
    out = []
    for c in classes.tolist():
        r, f = real[real_labels == c], fake[fake_labels == c]
        if r.shape[0] < 2 or f.shape[0] < 2:
            raise ValueError(f"class {c} has {r.shape[0]} real and {f.shape[0]} generated samples; Intra-FID needs "
                             "at least 2 of each per class")
        out.append(frechet_distance(r, f))
    return float(torch.tensor(out, dtype=torch.float64).mean())


def inception_score(logits: Tensor, *, splits: int = 10) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) ‖ p(y))) from (n, k) class logits, mean and std over ``splits`` (torchmetrics'
    ``InceptionScore`` with the given logits)."""
    logits = _features(logits, "logits")
    metric = InceptionScore(feature=_Given(logits.shape[1]), splits=splits, sync_on_compute=False)
    metric.update(logits)
    mean, std = metric.compute()
    return float(mean), float(std)


@torch.no_grad()
def classifier_outputs(net: nn.Module, x: Tensor, *, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """(penultimate features, logits) of a network following the project's protocol (``penultimate``)."""
    feats, logits = [], []
    for start in range(0, x.shape[0], batch_size):
        f = net.penultimate(x[start:start + batch_size])
        feats.append(f)
        logits.append(net.last_layer(f))
    return torch.cat(feats), torch.cat(logits)


@torch.no_grad()
def feature_outputs(extractor: nn.Module, images: Tensor, *, batch_size: int = 50) -> tuple[Tensor, ...]:
    """A feature extractor returning a tuple per batch (``models/inception.py``'s pool features and logits: one
    forward pass for FID, Intra-FID and IS), run in batches and concatenated."""
    parts = [extractor(images[start:start + batch_size]) for start in range(0, images.shape[0], batch_size)]
    return tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((classifier_outputs(net, x)[1].argmax(dim=1) == y).double().mean())
