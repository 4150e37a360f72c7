"""Self-distillation (RelaxLoss paper's baseline, Chen, Yu & Fritz, ICLR 2022, App. B.5 Eq. 17-18)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torch import Tensor, nn

from lightning_privacy.defenses.bank import SubsetDataModule, quiet_lightning
from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.net import build_net


def load_teacher(path: str, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """The frozen, eval-mode network of a ClassifierDefense Lightning checkpoint with the student's shapes."""
    how = ("set model.init_args.teacher_ckpt (--model.init_args.teacher_ckpt) to the .ckpt of a trained "
           "defense with the same num_classes and input_shape, e.g. one written by an ERM fit, or leave it "
           "null to train the teacher first")
    if not Path(path).is_file():
        raise UserInputError(f"teacher_ckpt {path!r} is not a file; {how}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001  (any unreadable file is the user's to fix)
        raise UserInputError(f"teacher_ckpt {path!r} is not a readable checkpoint ({error}); {how}") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserInputError(f"teacher_ckpt {path!r} has no 'state_dict': not a Lightning checkpoint; {how}")
    hp = dict(checkpoint.get("hyper_parameters", {}))
    expected = {"num_classes": num_classes, "input_shape": tuple(input_shape)}
    found = {"num_classes": hp.get("num_classes", num_classes), "input_shape": tuple(hp.get("input_shape", input_shape))}
    for name in expected:
        if found[name] != expected[name]:
            raise UserInputError(f"teacher_ckpt {path!r} has {name} {found[name]}, the student {expected[name]}; "
                                 f"self-distillation needs the same architecture: {how}")
    teacher = build_net(hp.get("net"), input_shape=input_shape, num_classes=num_classes,
                        dropout=hp.get("dropout", 0.0))
    weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    own = teacher.state_dict()
    wrong = [f"{k}: checkpoint {tuple(weights[k].shape)} vs expected {tuple(v.shape)}"
             for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    missing = sorted(set(own) - set(weights))
    if wrong or missing:
        raise UserInputError(f"teacher_ckpt {path!r} does not fit the student's network "
                             f"(mismatching shapes: {wrong or 'none'}; missing: {missing or 'none'}); {how}")
    teacher.load_state_dict(weights, strict=False)
    return teacher.eval().requires_grad_(False)


class SelfDistillation(ClassifierDefense):
    """Chen, Yu & Fritz (ICLR 2022) Eq. 17: L = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE.

    p^T is the temperature-T softmax of Eq. 18. Eq. 17 is printed as D_KL(p_s || p_t); this follows Hinton et
    al.'s distillation, whose target is the teacher's distribution (see the README). The paper fixes alpha = 0.5
    and sweeps T over [1, 2, 5, 10, 20, 50, 100].

    The teacher has the student's network and is trained on the same members: from ``teacher_ckpt``, or, when
    that is null, by ERM with the student's network and optimizer settings before the student's fit, for
    ``teacher_epochs`` (null: the student's ``trainer.max_epochs``), cached under ``teacher_cache_dir`` by split,
    members, network and recipe (the shadow bank's way). It is frozen, in eval mode and kept out of
    ``self._modules``: neither optimized nor saved in the student's checkpoint.
    """

    dp_refusal = "its teacher was trained on the members without DP, so the student would carry the teacher's leakage"
    key_hparams = ("T", "alpha")

    def __init__(
        self,
        teacher_ckpt: Optional[str] = None,
        T: float = 5.0,
        alpha: float = 0.5,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        teacher_epochs: Optional[int] = None,
        teacher_cache_dir: Optional[str] = "outputs/teachers",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if T <= 0:
            raise UserInputError(f"T (distillation temperature) must be > 0; got {T} (the paper sweeps 1 to 100)")
        if not 0.0 <= alpha <= 1.0:
            raise UserInputError(f"alpha (weight of the distillation term) must be in [0, 1]; got {alpha}")
        if teacher_epochs is not None and teacher_epochs < 1:
            raise UserInputError(f"teacher_epochs must be >= 1 or null (the student's max_epochs); got {teacher_epochs}")
        super().__init__(num_classes=num_classes, input_shape=input_shape, **kwargs)
        teacher = load_teacher(teacher_ckpt, num_classes, input_shape) if teacher_ckpt is not None else None
        self.__dict__["teacher"] = teacher  # not a submodule

    # -- the teacher: given, or trained (ERM, same network, same members) and cached -----------------------------

    def on_fit_start(self) -> None:
        if self.teacher is None:
            self.__dict__["teacher"] = self.train_teacher(self.trainer.datamodule)

    def _teacher_key(self, dm: Any, indices: Tensor, epochs: int) -> str:
        hp = self.hparams
        blob = json.dumps({
            "split": dm.splits.digest() if getattr(dm, "splits", None) is not None else None,
            "members": hashlib.sha256(indices.numpy().tobytes()).hexdigest(), "net": hp.net,
            "input_shape": list(hp.input_shape), "num_classes": hp.num_classes, "lr": hp.lr,
            "weight_decay": hp.weight_decay, "epochs": epochs, "seed": hp.seed, "batch_size": dm.batch_size,
        }, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def train_teacher(self, dm: Any) -> nn.Module:
        """ERM with the student's network on the student's training samples; cached by split and recipe."""
        from lightning_privacy.defenses.erm import ERM

        if dm is None or not (isinstance(dm, SubsetDataModule) or hasattr(dm, "training_indices")):
            raise UserInputError("self-distillation without teacher_ckpt trains its teacher on the members, so it "
                                 "needs a PrivacyDataModule passed to fit (datamodule=...); or set teacher_ckpt")
        parent, indices = (dm.parent, dm.indices) if isinstance(dm, SubsetDataModule) else (dm, dm.training_indices())
        hp = self.hparams
        epochs = hp.teacher_epochs or self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise UserInputError("self-distillation trains its teacher for trainer.max_epochs, which is unset: set "
                                 "model.init_args.teacher_epochs")
        teacher = ERM(num_classes=hp.num_classes, input_shape=hp.input_shape, net=hp.net, lr=hp.lr,
                      weight_decay=hp.weight_decay)
        path = (Path(hp.teacher_cache_dir) / f"teacher-{self._teacher_key(parent, indices, epochs)}.pt"
                if hp.teacher_cache_dir else None)
        if path is not None and path.is_file():
            teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        else:
            with torch.random.fork_rng(devices=[]), quiet_lightning():
                torch.manual_seed(hp.seed)
                trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                                  enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                                  limit_val_batches=0, devices=1,
                                  accelerator="cpu" if self.device.type == "cpu" else "auto")
                trainer.fit(teacher, datamodule=SubsetDataModule(parent, indices))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(teacher.state_dict(), path)
        return teacher.net.to(self.device).eval().requires_grad_(False)

    # -- training: Eq. 17 ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def teacher_logits(self, x: Tensor) -> Tensor:
        if self.teacher is None:
            raise RuntimeError("SelfDistillation has no teacher: fit trains one (on_fit_start), or set teacher_ckpt")
        self.teacher.to(x.device).eval()
        return self.teacher(x)

    def distillation_loss(self, logits: Tensor, teacher_logits: Tensor, y: Tensor) -> Tensor:
        """Eq. 17 for given student and teacher logits."""
        T, alpha = self.hparams.T, self.hparams.alpha
        kl = F.kl_div((logits / T).log_softmax(-1), (teacher_logits / T).log_softmax(-1), log_target=True,
                      reduction="batchmean")
        return alpha * T**2 * kl + (1.0 - alpha) * F.cross_entropy(logits, y)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = self.distillation_loss(logits, self.teacher_logits(x), y)
        self.log_train_metrics(loss, logits, y)
        return loss
