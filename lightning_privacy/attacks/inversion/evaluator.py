"""The evaluation classifier of inversion attack accuracy (as model-inversion toolboxes report it): the project's CNN
trained on real images disjoint from the members; a reconstruction counts as a success when it assigns it to the
target class. The classifier is ``defenses/evaluator.py``'s, shared with the GAN fidelity audit's domain metrics and
cached by the split's hash, the role's images, the network and the training settings."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_privacy.defenses.evaluator import evaluation_classifier, train_classifier

__all__ = ["attack_accuracy", "evaluation_classifier", "train_classifier"]


@torch.no_grad()
def attack_accuracy(classifier: nn.Module, inputs: Tensor, labels: Tensor) -> float:
    """The share of reconstructions (as model inputs) that ``classifier`` assigns to their target ``labels``."""
    predicted = classifier(inputs).argmax(-1).cpu()
    return float((predicted == labels.cpu()).float().mean())
