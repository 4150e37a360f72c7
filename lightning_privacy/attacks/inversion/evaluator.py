"""The evaluation classifier of inversion attack accuracy (as model-inversion toolboxes report it): the project's CNN
trained on real images disjoint from the members; a reconstruction counts as a success when it assigns it to the
target class. Weights are cached by the split's hash, the role, the network and the training settings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_privacy.errors import UserInputError
from lightning_privacy.models.net import build_net, net_spec


def train_classifier(x: Tensor, y: Tensor, *, num_classes: int, net: Optional[Mapping[str, Any]] = None,
                     epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> nn.Module:
    """``net`` (default: the papers' CNN) trained with Adam and cross-entropy on model inputs ``x`` and labels ``y``."""
    if epochs < 1:
        raise UserInputError(f"evaluation classifier epochs must be >= 1; got {epochs}")
    if x.shape[0] == 0:
        raise UserInputError("the evaluation classifier needs training images; its role is empty")
    torch.manual_seed(seed)
    model = build_net(net, input_shape=tuple(x.shape[1:]), num_classes=num_classes).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
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


def evaluation_classifier(x: Tensor, y: Tensor, *, num_classes: int, key: Mapping[str, Any],
                          cache_dir: Optional[Path], net: Optional[Mapping[str, Any]] = None, epochs: int = 10,
                          seed: int = 0) -> nn.Module:
    """``train_classifier`` cached under ``cache_dir`` by ``key`` (e.g. the split hash and role) and the settings."""
    spec = net_spec(net)
    digest = hashlib.sha256(json.dumps({**dict(key), "net": spec, "epochs": epochs, "seed": seed,
                                        "classes": num_classes, "shape": list(x.shape[1:])},
                                       sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"evaluator-{digest}.pt" if cache_dir else None
    if path is not None and path.is_file():
        model = build_net(spec, input_shape=tuple(x.shape[1:]), num_classes=num_classes)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.to(x.device).eval()
    model = train_classifier(x, y, num_classes=num_classes, net=spec, epochs=epochs, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)
    return model


@torch.no_grad()
def attack_accuracy(classifier: nn.Module, inputs: Tensor, labels: Tensor) -> float:
    """The share of reconstructions (as model inputs) that ``classifier`` assigns to their target ``labels``."""
    predicted = classifier(inputs).argmax(-1).cpu()
    return float((predicted == labels.cpu()).float().mean())
