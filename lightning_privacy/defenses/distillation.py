"""Self-distillation (RelaxLoss paper's baseline, Chen, Yu & Fritz, ICLR 2022, App. B.5 Eq. 17-18)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.cnn import PaperCNN

SET_TEACHER = "SET_ME: path/to/teacher.ckpt"
"""The config's placeholder for ``teacher_ckpt``; loading it fails with a message saying what to set."""


def load_teacher(path: str, num_classes: int, input_shape: Sequence[int]) -> PaperCNN:
    """The frozen, eval-mode network of a ClassifierDefense Lightning checkpoint with the student's shapes."""
    how = ("set model.init_args.teacher_ckpt (--model.init_args.teacher_ckpt) to the .ckpt of a trained "
           "defense with the same num_classes and input_shape, e.g. one written by an ERM fit")
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
    teacher = PaperCNN(tuple(input_shape), num_classes, tuple(hp.get("channels", (32, 64, 128))),
                       hp.get("hidden", 128), hp.get("dropout", 0.0))
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

    p^T is the temperature-T softmax of Eq. 18. The paper writes the KL as D_KL(p_s || p_t); like Hinton et al.
    and common implementations, the teacher is the target distribution here. The paper fixes alpha = 0.5.
    The teacher (same architecture, trained on the members) is frozen, in eval mode and kept out of
    ``self._modules``: it is neither optimized nor saved in the student's checkpoint.
    """

    dp_refusal = "its teacher was trained on the members without DP, so the student would carry the teacher's leakage"

    def __init__(
        self,
        teacher_ckpt: str = SET_TEACHER,
        T: float = 4.0,
        alpha: float = 0.5,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        **kwargs: Any,
    ) -> None:
        if T <= 0:
            raise UserInputError(f"T (distillation temperature) must be > 0; got {T} (the paper sweeps 1 to 100)")
        if not 0.0 <= alpha <= 1.0:
            raise UserInputError(f"alpha (weight of the distillation term) must be in [0, 1]; got {alpha}")
        super().__init__(num_classes=num_classes, input_shape=input_shape, **kwargs)
        self.__dict__["teacher"] = load_teacher(teacher_ckpt, num_classes, input_shape)  # not a submodule

    @torch.no_grad()
    def teacher_logits(self, x: Tensor) -> Tensor:
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
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss
