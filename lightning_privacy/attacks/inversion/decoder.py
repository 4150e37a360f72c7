"""The layer-wise decoder inversion attack (DP-vs-regularization paper, Sec. 4, Fig. 2–3): cut the trained target
after layer j, freeze that prefix, train a decoder (``models/decoder.py``) on data the attacker holds to map layer
j's activation back to the input, and report the reconstruction error on members and non-members.

White-box points are the layers the network lists (``named_layers()``) and its pooling modules, in module order (the
paper's Table 4: Conv1, MaxPool1, …, Flatten+Dense, Prediction), each weighted layer read after the activation
modules that directly follow it (a conv's ReLU, a dense layer's ReLU; the prediction layer's logits); the black-box
point (``blackbox``) is the score vector a client receives (``released_probs``, so test-time defenses count).
Functions of tensors and a model: the callback gathers the images, this module trains and scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.inversion import reconstruction_scores
from lightning_privacy.models.decoder import Decoder

POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
ACTIVATIONS = (nn.ReLU, nn.SiLU, nn.GELU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.ReLU6, nn.Softplus)
BLACKBOX = "blackbox"


def network_layers(net: nn.Module) -> list[str]:
    """The points ``net`` exposes: its ``named_layers()`` and its pooling modules, in module order (input to
    output)."""
    named = getattr(net, "named_layers", None)
    if not callable(named):
        raise UserInputError(f"{type(net).__name__} does not expose its layers: the decoder inversion attack needs "
                             "named_layers() (the network protocol, lightning_privacy/models/net.py)")
    names = [name for name, _ in named()]
    if not names:
        raise UserInputError(f"{type(net).__name__}.named_layers() lists no layer: nothing to invert from")
    weighted = set(names)
    points = [n for n, m in net.named_modules() if n and (n in weighted or isinstance(m, POOLING))]
    return points if weighted <= set(points) else names


def select_layers(net: nn.Module, layers: Optional[Sequence[str]]) -> list[str]:
    """``layers`` checked against the network's (``None``: all of them), in the network's order."""
    valid = network_layers(net)
    if layers is None:
        return valid
    unknown = [name for name in layers if name not in valid]
    if unknown:
        raise UserInputError(f"unknown layer(s) {unknown} for {type(net).__name__}; its layers are {valid}")
    return [name for name in valid if name in set(layers)]


def capture_module(net: nn.Module, layer: str) -> nn.Module:
    """The module whose output is ``layer``'s post-activation output: the layer itself, or the last of the
    activation modules that directly follow it in the network's module order."""
    modules = dict(net.named_modules())
    leaves = [m for m in net.modules() if not list(m.children())]
    target = modules[layer]
    if target not in leaves:
        return target
    i = next(k for k, m in enumerate(leaves) if m is target)
    while i + 1 < len(leaves) and isinstance(leaves[i + 1], ACTIVATIONS):
        i += 1
    return leaves[i]


class _Stop(Exception):
    """Raised by the capture hook: the frozen prefix ends at the cut."""


@torch.no_grad()
def activations(net: nn.Module, x: Tensor, *, layer: Optional[str] = None,
                release: Optional[Callable[[Tensor], Tensor]] = None, batch_size: int = 256) -> Tensor:
    """Layer ``layer``'s post-activation output for inputs ``x`` (the prefix only runs), or with ``layer=None`` the
    released scores ``release(net(x))`` (softmax when ``release`` is None); eval mode, no gradients."""
    was_training = net.training
    net.eval()
    out: list[Tensor] = []
    try:
        for chunk in x.split(batch_size):
            if layer is None:
                logits = net(chunk)
                out.append((release(logits) if release is not None else logits.softmax(-1)).float())
                continue
            store: list[Tensor] = []

            def hook(_module, _inputs, output):
                store.append(output)
                raise _Stop

            handle = capture_module(net, layer).register_forward_hook(hook)
            try:
                net(chunk)
            except _Stop:
                pass
            finally:
                handle.remove()
            out.append(store[0].detach().float())
    finally:
        net.train(was_training)
    return torch.cat(out)


def train_decoder(features: Tensor, targets: Tensor, *, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                  width: int = 64, seed: int = 0) -> Decoder:
    """A ``Decoder`` fitted with MSE and Adam (the paper's lr 1e-3) from ``features`` (n, …) to images (n, C, H, W),
    its input standardized with the statistics of ``features`` (the attacker's data only)."""
    if epochs < 1:
        raise UserInputError(f"decoder epochs must be >= 1; got {epochs}")
    if features.shape[0] != targets.shape[0] or features.shape[0] == 0:
        raise UserInputError(f"the decoder needs as many (> 0) targets as features; got {features.shape[0]} and "
                             f"{targets.shape[0]}")
    torch.manual_seed(seed)
    decoder = Decoder(features.shape[1:], targets.shape[1:], width=width).to(features.device)
    decoder.fit_input_stats(features)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    decoder.train()
    for _ in range(epochs):
        for batch in torch.randperm(features.shape[0], generator=g).split(batch_size):
            batch = batch.to(features.device)
            loss = F.mse_loss(decoder(features[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return decoder.eval()


@torch.no_grad()
def decode(decoder: Decoder, features: Tensor, batch_size: int = 256) -> Tensor:
    return torch.cat([decoder(chunk) for chunk in features.split(batch_size)])


@dataclass
class DecoderInversion:
    """``points``: the attacked points in order (layer names, then ``blackbox``); ``scores[point][split]``:
    ``{mse, psnr, ssim}`` of that point's reconstructions of each evaluated split; ``reconstructions[point][split]``:
    the first ``grid`` reconstructions of each split (the grid artifact's columns)."""

    points: list[str]
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    reconstructions: dict[str, dict[str, Tensor]] = field(default_factory=dict)


def decoder_inversion(
    net: nn.Module,
    *,
    attacker: tuple[Tensor, Tensor],
    evaluate: dict[str, tuple[Tensor, Tensor]],
    layers: Optional[Sequence[str]] = None,
    blackbox: bool = True,
    release: Optional[Callable[[Tensor], Tensor]] = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 64,
    seed: int = 0,
    grid: int = 8,
) -> DecoderInversion:
    """Train one decoder per point on ``attacker`` = (model inputs, target images in [0, 1]) and score it on each
    ``evaluate[split]`` = (inputs, images). ``layers``: names from ``named_layers()`` (None: all);
    ``blackbox``: also invert the released scores ``release(logits)``."""
    points: list[Optional[str]] = list(select_layers(net, layers))
    if blackbox:
        points.append(None)
    x_att, y_att = attacker
    result = DecoderInversion(points=[p if p is not None else BLACKBOX for p in points])
    for point, name in zip(points, result.points):
        decoder = train_decoder(activations(net, x_att, layer=point, release=release), y_att, epochs=epochs,
                                batch_size=batch_size, lr=lr, width=width, seed=seed)
        result.scores[name], result.reconstructions[name] = {}, {}
        for split, (x, y) in evaluate.items():
            recon = decode(decoder, activations(net, x, layer=point, release=release))
            result.scores[name][split] = reconstruction_scores(recon.cpu(), y.cpu())
            result.reconstructions[name][split] = recon[:grid].cpu()
    return result
