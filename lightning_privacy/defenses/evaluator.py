"""The evaluation classifier: the project's CNN trained on real images disjoint from the members, cached on disk.

One helper model (like ``bank.py``'s shadows) shared by the inversion audit's attack accuracy (a reconstruction
succeeds when this classifier assigns it to its target class) and the GAN fidelity audit's domain metrics (its
penultimate features and class logits stand in for Inception's: ``gan/*_domain``). ``train_classifier`` is the one
training loop, also the GAN papers' downstream classifier on generated samples (App. A.2, with its own settings).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_privacy.canonical import canonical_hash
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.net import build_net, net_spec


def train_classifier(x: Tensor, y: Tensor, *, num_classes: int, net: Optional[Mapping[str, Any]] = None,
                     epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, beta1: float = 0.9,
                     seed: int = 0) -> nn.Module:
    """``net`` (default: the papers' CNN) trained with Adam (lr, β1, β2 0.999) and cross-entropy on model inputs
    ``x`` and labels ``y``, seeded; returned in eval mode."""
    if epochs < 1:
        raise UserInputError(f"classifier epochs must be >= 1; got {epochs}")
    if x.shape[0] == 0:
        raise UserInputError("the classifier needs training images; its role is empty")
    torch.manual_seed(seed)
    model = build_net(net, input_shape=tuple(x.shape[1:]), num_classes=num_classes).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(beta1, 0.999))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(x.shape[0], generator=g).split(batch_size):
            batch = batch.to(x.device)
            loss = F.cross_entropy(model(x[batch]), y[batch].to(x.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def evaluation_key(x: Tensor, y: Tensor, *, num_classes: int, key: Mapping[str, Any], net: Optional[Mapping[str, Any]],
                   epochs: int, batch_size: int, lr: float, beta1: float, seed: int) -> str:
    """The cache key: the caller's ``key`` (dataset, split hash, role), the training images and labels themselves
    (so the role's indices, image size and normalization are in it), the network and every training setting."""
    return canonical_hash({"key": dict(key), "images": x, "labels": y, "classes": num_classes,
                           "net": net_spec(net), "epochs": epochs, "batch_size": batch_size, "lr": lr,
                           "beta1": beta1, "seed": seed}, length=16)


def evaluation_classifier(x: Tensor, y: Tensor, *, num_classes: int, key: Mapping[str, Any],
                          cache_dir: Optional[Union[str, Path]], net: Optional[Mapping[str, Any]] = None,
                          epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, beta1: float = 0.9,
                          seed: int = 0) -> nn.Module:
    """``train_classifier`` on (x, y), cached as ``cache_dir/evaluator-<evaluation_key>.pt``: a second use with
    the same split, role data, network and settings loads the weights instead of training (``cache_dir`` None: no
    cache). The inversion and GAN fidelity audits call it with the same defaults (the papers' CNN, Adam 1e-3, β1
    0.9, batch 64, 10 epochs), so on one role of one split they share one file."""
    spec = net_spec(net)
    path = None
    if cache_dir is not None:
        digest = evaluation_key(x, y, num_classes=num_classes, key=key, net=spec, epochs=epochs,
                                batch_size=batch_size, lr=lr, beta1=beta1, seed=seed)
        path = Path(cache_dir) / f"evaluator-{digest}.pt"
    if path is not None and path.is_file():
        model = build_net(spec, input_shape=tuple(x.shape[1:]), num_classes=num_classes)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.to(x.device).eval()
    model = train_classifier(x, y, num_classes=num_classes, net=spec, epochs=epochs, batch_size=batch_size, lr=lr,
                             beta1=beta1, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader sees no half-written file
    return model
