"""pytorch-fid's InceptionV3 (the TensorFlow FID network, ported) built from a local weights file, never downloaded.

``pytorch_fid.inception.fid_inception_v3()`` and ``InceptionV3(use_fid_inception=True)`` download
``pt_inception-2015-12-05-6726825d.pth`` when called; nothing can be downloaded here and no package ships it. So the
same modules are built without weights (``fid_inception_network``), the file's state dict is loaded into them
(keys and shapes checked, and its sha256 against the name's prefix ``6726825d``), and pytorch-fid's
``InceptionV3([3])`` is assembled around that one network: its 2048-d pool features (FID) and, through the same
network's ``fc``, the 1008-way logits of ``fid_inception_v3()`` (IS) come out of one forward pass.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Union
from unittest import mock

import torch
from torch import Tensor, nn

from lightning_privacy.errors import UserInputError

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION_SIZE = "about 91 MiB, 95.6 MB"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE


def hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``), where torch.hub and pytorch-fid keep the file."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception_weights(path: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """The weights file: ``path`` (a file, or a folder holding ``INCEPTION_FILE``) when given — an error when it is
    not there — else ``hub_checkpoints_dir() / INCEPTION_FILE`` when present, else None."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / INCEPTION_FILE
        if not p.is_file():
            raise UserInputError(f"the Inception weights file {str(p)!r} (audit.gan_fidelity.inception_weights) does "
                                 f"not exist; put pytorch-fid's {INCEPTION_FILE} ({INCEPTION_SIZE}) there, or into "
                                 f"{hub_checkpoints_dir()}")
        return p
    p = hub_checkpoints_dir() / INCEPTION_FILE
    return p if p.is_file() else None


def fid_inception_network() -> nn.Module:
    """The network of ``pytorch_fid.inception.fid_inception_v3()`` (torchvision's Inception3, 1008 classes, no aux
    head, FID-patched blocks) with no weights loaded: the same construction minus its download."""
    from pytorch_fid import inception as pf

    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class InceptionFeatures(nn.Module):
    """pytorch-fid's ``InceptionV3([3])`` (bilinear resize to 299, [0, 1] → [-1, 1]) around a loaded
    ``fid_inception_network``, plus that network's ``fc``: ``forward(images)`` → (2048-d pool features, 1008-way
    logits). Images in [0, 1], (n, c, h, w); one channel is repeated to three (grayscale data)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        from pytorch_fid import inception as pf

        with mock.patch.object(pf, "fid_inception_v3", lambda: net):  # its constructor would download
            self.pool = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                                       normalize_input=True)
        self.fc = net.fc
        self.eval()

    @staticmethod
    def rgb(images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"Inception takes (n, 1 or 3, h, w) images; got {tuple(images.shape)}")
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        pool = self.pool(self.rgb(images.float()))[0].flatten(1)
        return pool, self.fc(pool)


class InceptionPool(nn.Module):
    """The 2048-d pool features alone, in the form torchmetrics' ``FrechetInceptionDistance(feature=…)`` takes
    (``num_features``; float images in [0, 1] with ``normalize=False``)."""

    num_features = 2048

    def __init__(self, features: InceptionFeatures) -> None:
        super().__init__()
        self.features = features

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)[0]


class InceptionLogits(nn.Module):
    """The 1008-way logits of ``fid_inception_v3()`` alone, for torchmetrics' ``InceptionScore(feature=…)``."""

    num_features = 1008

    def __init__(self, features: InceptionFeatures) -> None:
        super().__init__()
        self.features = features

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)[1]


def load_inception(path: Union[str, Path], *, check_hash: bool = True) -> InceptionFeatures:
    """``InceptionFeatures`` with the weights of ``path``. A file that is not pytorch-fid's FID weights — not a
    state dict, a missing, unexpected or mis-shaped key, or (``check_hash``) a sha256 not starting with
    ``6726825d`` — is an error that says which."""
    path = Path(path)
    if check_hash:
        digest = sha256_of(path)
        if not digest.startswith(INCEPTION_SHA256_PREFIX):
            raise UserInputError(f"{path} is not pytorch-fid's {INCEPTION_FILE}: its sha256 starts with {digest[:8]}, "
                                 f"not {INCEPTION_SHA256_PREFIX} (a damaged or different file; fetch it again from "
                                 f"{INCEPTION_URL}, or set audit.gan_fidelity.inception_check_hash: false for weights "
                                 "you converted yourself)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file at all
        raise UserInputError(f"{path} is not a PyTorch state dict ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict):
        raise UserInputError(f"{path} holds a {type(state).__name__}, not the state dict of pytorch-fid's Inception")
    net = fid_inception_network()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if not isinstance(state[k], Tensor) or tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

        details = "; ".join(part for part in (
            missing and f"missing keys: {some(missing)}", unexpected and f"unexpected keys: {some(unexpected)}",
            wrong and "wrong shapes: " + some([f"{k} {tuple(getattr(state[k], 'shape', ()))} (expected "
                                               f"{tuple(expected[k].shape)})" for k in wrong])) if part)
        raise UserInputError(f"{path} is not the state dict of pytorch-fid's FID Inception ({INCEPTION_FILE}): "
                             f"{details}")
    net.load_state_dict(state)
    return InceptionFeatures(net)
