"""Model-inversion audit (``audit.inversion``): after the test run, the layer-wise decoder attack
(DP-vs-regularization paper, Sec. 4) and the optimization attack (class-DP paper, Algorithm 1) against the tested
weights; emits an ``AuditResult`` with their metrics and image grids. Helper models (the decoders) train on rank 0
only, as plain torch loops outside the trainer: nothing syncs across DDP ranks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn

from lightning_privacy.attacks.inversion.evaluator import attack_accuracy, evaluation_classifier
from lightning_privacy.attacks.inversion.decoder import BLACKBOX, DecoderInversion, decoder_inversion, select_layers
from lightning_privacy.attacks.inversion.optimization import InversionResult, check_settings, invert
from lightning_privacy.attacks.inversion.priors import check_btv
from lightning_privacy.callbacks.audit import AuditCallback
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.inversion import MIADistance, mia_distance
from lightning_privacy.results import Artifact, AuditResult

ATTACKS = ("decoder", "optimization")
ROLES = ("members", "nonmembers", "validation", "shadow", "reference")


@dataclass
class InversionAuditConfig:
    """``audit.inversion`` settings.

    attacks: ``decoder`` and/or ``optimization``.

    Decoder attack: layers: names from the network's ``named_layers()`` (null: all); blackbox: also invert the
    released score vector; decoder_role: the data role the attacker trains its decoders on (never ``members``);
    decoder_samples / eval_samples: caps on the attacker's samples and on the members and non-members scored
    (null: all); decoder_epochs, decoder_batch_size, decoder_lr (the paper: Adam 1e-3), decoder_width.

    Optimization attack (Algorithm 1): steps (T), lr (η), lam (λ), prior (``l1``, ``btv``, ``none``), btv_p,
    btv_alpha, optimizer (``paper``: lines 6–8 as printed; ``adam``: torch's), change_of_variable (false: x = w
    clipped to [0, 1]), restarts (R; 1: w₀ = 0), classes (null: all).

    Attack accuracy (beyond the paper): attack_acc: score the reconstructions with an evaluation classifier (the
    papers' CNN trained evaluator_epochs on evaluator_role, disjoint from the members, cached in cache_dir by the
    split hash; null cache_dir: no cache).

    grid: samples per split in the decoder grid; seed: of every draw and helper model.
    """

    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    layers: Optional[list[str]] = None
    blackbox: bool = True
    decoder_role: str = "reference"
    decoder_samples: Optional[int] = None
    eval_samples: Optional[int] = 1000
    decoder_epochs: int = 10
    decoder_batch_size: int = 64
    decoder_lr: float = 1e-3
    decoder_width: int = 64
    steps: int = 5000
    lr: float = 0.1
    lam: float = 0.05
    prior: Literal["l1", "btv", "none"] = "l1"
    btv_p: int = 2
    btv_alpha: float = 0.9
    optimizer: Literal["paper", "adam"] = "paper"
    change_of_variable: bool = True
    restarts: int = 1
    classes: Optional[list[int]] = None
    attack_acc: bool = True
    evaluator_role: str = "reference"
    evaluator_epochs: int = 10
    cache_dir: Optional[str] = "outputs/evaluator"
    grid: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown or not self.attacks:
            raise UserInputError(f"audit.inversion.attacks must be a non-empty subset of {list(ATTACKS)}; "
                                 f"got {self.attacks}")
        for name in ("decoder_role", "evaluator_role"):
            role = getattr(self, name)
            if role not in ROLES:
                raise UserInputError(f"audit.inversion.{name} must be a data role {list(ROLES)}; got {role!r}")
            if role == "members":
                raise UserInputError(f"audit.inversion.{name} must be disjoint from the members (the attacker does "
                                     "not hold the training data): use reference (default), shadow or validation")
        if self.evaluator_epochs < 1:
            raise UserInputError(f"audit.inversion.evaluator_epochs must be >= 1; got {self.evaluator_epochs}")
        for name in ("decoder_samples", "eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserInputError(f"audit.inversion.{name} must be >= 1 or null (all); got {value}")
        if self.decoder_epochs < 1 or self.decoder_batch_size < 1 or self.decoder_width < 1:
            raise UserInputError("audit.inversion decoder_epochs, decoder_batch_size and decoder_width must be >= 1")
        if self.decoder_lr <= 0:
            raise UserInputError(f"audit.inversion.decoder_lr must be > 0; got {self.decoder_lr}")
        check_settings(steps=self.steps, lr=self.lr, lam=self.lam, restarts=self.restarts)
        check_btv(self.btv_p, self.btv_alpha)
        if self.grid < 1:
            raise UserInputError(f"audit.inversion.grid must be >= 1; got {self.grid}")


def _target_net(pl_module: nn.Module) -> nn.Module:
    """The classifier network inside a defense (``net``), else the module itself."""
    net = getattr(pl_module, "net", None)
    return net if isinstance(net, nn.Module) else pl_module


def attacker_indices(dm: Any, role: str) -> Tensor:
    """The pool indices of the decoder's training role, checked disjoint from the members."""
    if role == "members":
        raise UserInputError("audit.inversion.decoder_role must be disjoint from the members")
    indices, members = dm.role_indices(role), dm.role_indices("members")
    if indices.numel() == 0:
        raise UserInputError(f"the decoder attacker's role {role!r} is empty: set data.init_args.{role} "
                             "(e.g. 0.1) or choose another audit.inversion.decoder_role")
    if torch.isin(indices, members).any():
        raise UserInputError(f"the decoder attacker's role {role!r} overlaps the members")
    return indices


class InversionAudit(AuditCallback):
    """Runs after each test run; emits an ``AuditResult`` (``name="inversion"``) holding

    decoder: ``inversion/decoder/<point>/{mse,psnr,ssim}_{members,nonmembers}`` per layer and for ``blackbox``,
    ``inversion/decoder/blackbox_mse`` and ``inversion/decoder/whitebox_mse`` (the best layer, tag
    ``inversion.decoder.best_layer``), on the non-members (the paper's Table 4 is on test sets);
    optimization: ``inversion/optimization/distance_l2`` and ``…/distance_ssim`` (MIA distance, averaged over
    classes), per class ``inversion/optimization/class_<k>/distance_{l2,ssim}``, ``…/confidence`` (f_label of the
    reconstructions), ``…/restarts``, ``…/attack_acc`` (share of reconstructions the evaluation classifier assigns
    to their class) and ``…/evaluator_acc`` (that classifier's accuracy on non-members); artifacts: the decoder
    grid (ground truth first, then one column per point), the reconstructions per class beside the nearest member,
    and the numbers as JSON; ``time/inversion_<attack>_s``."""

    def __init__(self, config: Optional[InversionAuditConfig] = None) -> None:
        super().__init__()
        self.config = config or InversionAuditConfig()
        self.decoder: Optional[DecoderInversion] = None
        self.optimization: Optional[InversionResult] = None
        self.distance: Optional[MIADistance] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Check the data roles and the layers before anything trains."""
        dm, c = trainer.datamodule, self.config
        if dm is None or not hasattr(dm, "role_indices"):
            raise UserInputError("the inversion audit needs a PrivacyDataModule (its member and attacker roles)")
        if "decoder" in c.attacks:
            select_layers(_target_net(pl_module), c.layers)
            attacker_indices(dm, c.decoder_role)
        if "optimization" in c.attacks and c.attack_acc:
            attacker_indices(dm, c.evaluator_role)
        if c.classes is not None:
            bad = [k for k in c.classes if not 0 <= k < dm.num_classes]
            if bad or not c.classes:
                raise UserInputError(f"audit.inversion.classes must be class indices in [0, {dm.num_classes}); "
                                     f"got {c.classes}")

    def _capped(self, indices: Tensor, cap: Optional[int]) -> Tensor:
        if cap is None or indices.numel() <= cap:
            return indices
        g = torch.Generator().manual_seed(self.config.seed)
        return indices[torch.randperm(indices.numel(), generator=g)[:cap]].sort().values

    @staticmethod
    def _images(dm: Any, indices: Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """(model inputs, images in [0, 1], labels) of these pool indices."""
        xs, ys = [], []
        for x, y in dm.index_dataloader(indices):
            xs.append(x)
            ys.append(y)
        x = torch.cat(xs).float()
        mean = torch.tensor(dm.mean).view(1, -1, 1, 1)
        std = torch.tensor(dm.std).view(1, -1, 1, 1)
        return x.to(device), (x * std + mean).clamp(0, 1).to(device), torch.cat(ys).long()

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        artifacts: dict[str, Artifact] = {}
        with torch.inference_mode(False), torch.enable_grad():
            for attack, run in (("decoder", self._decoder), ("optimization", self._optimization)):
                if attack in self.config.attacks:
                    start = time.perf_counter()
                    run(trainer, pl_module, metrics, tags, artifacts)
                    metrics[f"time/inversion_{attack}_s"] = time.perf_counter() - start
        summary = tuple(k for k in ("inversion/decoder/whitebox_mse", "inversion/decoder/blackbox_mse",
                                    "inversion/optimization/distance_l2") if k in metrics)
        self.emit(trainer, AuditResult(name="inversion", metrics=metrics, tags=tags, artifacts=artifacts,
                                       summary=summary))

    def _decoder(self, trainer: Trainer, pl_module: LightningModule, metrics: dict[str, float],
                 tags: dict[str, str], artifacts: dict[str, Artifact]) -> None:
        c, dm, device = self.config, trainer.datamodule, pl_module.device
        net = _target_net(pl_module)
        attacker = self._capped(attacker_indices(dm, c.decoder_role), c.decoder_samples)
        x_att, y_att, _ = self._images(dm, attacker, device)
        evaluate = {}
        for split in ("members", "nonmembers"):
            x, y, _ = self._images(dm, self._capped(dm.role_indices(split), c.eval_samples), device)
            evaluate[split] = (x, y)
        release = getattr(pl_module, "released_probs", None)
        self.decoder = result = decoder_inversion(
            net, attacker=(x_att, y_att), evaluate=evaluate, layers=c.layers, blackbox=c.blackbox,
            release=release if callable(release) else None, epochs=c.decoder_epochs,
            batch_size=c.decoder_batch_size, lr=c.decoder_lr, width=c.decoder_width, seed=c.seed, grid=c.grid)
        for point, splits in result.scores.items():
            for split, scores in splits.items():
                for name, value in scores.items():
                    metrics[f"inversion/decoder/{point}/{name}_{split}"] = value
        layers = [p for p in result.points if p != BLACKBOX]
        if layers:
            best = min(layers, key=lambda p: result.scores[p]["nonmembers"]["mse"])
            metrics["inversion/decoder/whitebox_mse"] = result.scores[best]["nonmembers"]["mse"]
            tags["inversion.decoder.best_layer"] = best
        if BLACKBOX in result.scores:
            metrics["inversion/decoder/blackbox_mse"] = result.scores[BLACKBOX]["nonmembers"]["mse"]
        metrics["inversion/decoder/attacker_samples"] = float(attacker.numel())
        tags["inversion.decoder.role"] = c.decoder_role
        truth = {split: y[:c.grid].cpu() for split, (_, y) in evaluate.items()}
        artifacts["inversion/decoder_grid.png"] = _decoder_grid(result, truth)
        artifacts["inversion/decoder_scores.json"] = json.dumps(result.scores, indent=2)

    def _optimization(self, trainer: Trainer, pl_module: LightningModule, metrics: dict[str, float],
                      tags: dict[str, str], artifacts: dict[str, Artifact]) -> None:
        c, dm, device = self.config, trainer.datamodule, pl_module.device
        classes = c.classes if c.classes is not None else list(range(dm.num_classes))
        mean = torch.tensor(dm.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(dm.std, device=device).view(1, -1, 1, 1)
        self.optimization = r = invert(
            _target_net(pl_module), labels=classes, shape=dm.input_shape, steps=c.steps, lr=c.lr, lam=c.lam,
            prior=c.prior, p=c.btv_p, alpha=c.btv_alpha, optimizer=c.optimizer,
            change_of_variable=c.change_of_variable, restarts=c.restarts, seed=c.seed,
            normalize=lambda x: (x - mean) / std)
        _, members, member_labels = self._images(dm, dm.role_indices("members"), torch.device("cpu"))
        rows = r.images.shape[0] * r.images.shape[1]
        flat = r.images.reshape(rows, *r.images.shape[2:])
        self.distance = d = mia_distance(flat, r.labels.repeat(r.images.shape[0]), members, member_labels)
        l2 = d.l2.view(r.images.shape[:2]).min(0).values  # the best restart per class
        ssim = d.ssim.view(r.images.shape[:2]).min(0).values
        metrics["inversion/optimization/distance_l2"] = float(l2.mean())
        metrics["inversion/optimization/distance_ssim"] = float(ssim.mean())
        metrics["inversion/optimization/confidence"] = float(r.confidence.mean())
        metrics["inversion/optimization/restarts"] = float(c.restarts)
        if c.attack_acc:
            metrics.update(self._attack_acc(dm, flat.to(device), r.labels.repeat(r.images.shape[0]), device,
                                            normalize=lambda x: (x - mean) / std))
        metrics["inversion/optimization/final_cost"] = float(r.cost[-1])
        for k, label in enumerate(r.labels.tolist()):
            metrics[f"inversion/optimization/class_{label}/distance_l2"] = float(l2[k])
            metrics[f"inversion/optimization/class_{label}/distance_ssim"] = float(ssim[k])
        tags.update({"inversion.optimization.prior": c.prior, "inversion.optimization.optimizer": c.optimizer,
                     "inversion.optimization.change_of_variable": str(c.change_of_variable)})
        nearest = members[d.nearest].view(*r.images.shape)
        artifacts["inversion/optimization_grid.png"] = _optimization_grid(r.images, nearest[0])
        artifacts["inversion/optimization.json"] = json.dumps(
            {"classes": r.labels.tolist(), "distance_l2": l2.tolist(), "distance_ssim": ssim.tolist(),
             "confidence": r.confidence.tolist(),
             "history_1_minus_f_label": r.history[::max(1, c.steps // 100)].tolist(),
             "settings": {k: getattr(c, k) for k in ("steps", "lr", "lam", "prior", "btv_p", "btv_alpha", "optimizer",
                                                     "change_of_variable", "restarts", "seed")}}, indent=2)


    def _attack_acc(self, dm: Any, images: Tensor, labels: Tensor, device: torch.device, *,
                    normalize: Any) -> dict[str, float]:
        """``attack_acc``: the evaluation classifier's verdict on the reconstructions; ``evaluator_acc``: its
        accuracy on (capped) non-members, so that a weak evaluator shows."""
        c = self.config
        x, _, y = self._images(dm, attacker_indices(dm, c.evaluator_role), device)
        classifier = evaluation_classifier(
            x, y, num_classes=dm.num_classes, epochs=c.evaluator_epochs, seed=c.seed,
            key={"dataset": dm.dataset_name, "split": dm.splits.digest(), "role": c.evaluator_role},
            cache_dir=Path(c.cache_dir) if c.cache_dir else None)
        x_test, _, y_test = self._images(dm, self._capped(dm.role_indices("nonmembers"), c.eval_samples), device)
        return {"inversion/optimization/attack_acc": attack_accuracy(classifier, normalize(images), labels),
                "inversion/optimization/evaluator_acc": attack_accuracy(classifier, x_test, y_test)}


def _save_grid(images: Tensor, columns: int):
    def write(path: Path) -> None:
        from torchvision.utils import save_image

        save_image(images, str(path), nrow=columns, padding=1, pad_value=1.0)

    return write


def _decoder_grid(result: DecoderInversion, truth: dict[str, Tensor]):
    """One row per sample (members, then non-members): ground truth, then the reconstruction from each point."""
    rows = []
    for split, images in truth.items():
        for i in range(images.shape[0]):
            rows.append(images[i])
            rows.extend(result.reconstructions[p][split][i] for p in result.points)
    return _save_grid(torch.stack(rows), 1 + len(result.points))


def _optimization_grid(images: Tensor, nearest: Tensor):
    """One row per class: the reconstruction of each restart, then the member nearest (L2) to the first."""
    restarts, classes = images.shape[:2]
    rows = []
    for k in range(classes):
        rows.extend(images[r, k] for r in range(restarts))
        rows.append(nearest[k])
    return _save_grid(torch.stack(rows), restarts + 1)
