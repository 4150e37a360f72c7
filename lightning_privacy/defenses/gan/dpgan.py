"""DPGAN (Xie et al. 2018), the PIGAN paper's DP baseline: the conditional GAN with DP-SGD on the discriminator."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning_privacy.defenses.gan.gan import (CODE_CLASSIFIER_TARGETS, DP_ON_CODE_CLASSIFIER, DP_ON_GENERATOR, GAN,
                                                GENERATOR_TARGETS)
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.dcgan import Layout
from lightning_privacy.privacy.config import DPConfig
from lightning_privacy.privacy.mixin import DPMixin


class DPGAN(DPMixin, GAN):
    """The GAN of ``gan.py`` whose discriminator trains with DP-SGD (Abadi et al. 2016) through ``DPMixin``.

    Only D reads member data, and only in the real half of its loss, −log D(x, y): that half is the private step
    (per-sample losses recorded under ``dp_recording``: Poisson-sampled members, each gradient clipped to S, the sum
    noised with N(0, σ²S²) and divided by the expected batch size), one per drawn batch, so the accountant counts
    exactly the D steps that read members. The fake half −log(1 − D(G(z, ỹ), ỹ)) and every G step read no member:
    G's weights are functions of z and of earlier released (private) D weights, so they are post-processing, and
    their gradients pass through unclipped and un-noised (noising them would charge privacy for public data, as
    Opacus' DCGAN example does, Opacus issue #418). ``dp.module`` is always ``discriminator``: DP on the generator
    is refused by name (it never reads member data), and so is a code classifier Q (DPGAN has none). δ: 1e-4 in the paper (``conf/defense/dpgan.yaml``).
    """

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 100,
        lr: float = 2e-4,
        beta1: float = 0.5,
        real_label: float = 1.0,
        layout: Layout = "auto",
        dp: Optional[DPConfig] = None,
    ) -> None:
        if dp is not None and dp.module not in ("discriminator", "net"):  # "net": DPConfig's default
            target = dp.module.lower()
            reason = (DP_ON_GENERATOR if target in GENERATOR_TARGETS else
                      "DPGAN has no code classifier Q (PIGAN's Q cannot be private: " + DP_ON_CODE_CLASSIFIER + ")"
                      if target in CODE_CLASSIFIER_TARGETS else f"{dp.module!r} is not one of its networks")
            raise UserInputError(f"DPGAN applies DP-SGD to the discriminator only, the one network that reads "
                                 f"member data; dp.module {dp.module!r} is refused: {reason}")
        if dp is not None:
            dp = dataclasses.replace(dp, module="discriminator")
        if dp is not None and dp.level != "record":
            raise UserInputError(f"DPGAN supports record-level DP only; got dp.level {dp.level!r}")
        super().__init__(num_classes, input_shape, latent_dim, lr, beta1, real_label, layout)
        self.save_hyperparameters(logger=False)
        self.configure_dp(dp)
        self._fake_batch = 0

    def training_loader(self, loader: DataLoader) -> DataLoader:
        self._fake_batch = loader.batch_size or 1  # Poisson batches vary (and may be empty): fakes keep this size
        return super().training_loader(loader)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_d, opt_g = self.optimizers()
        x, y = self.to_tanh(batch[0]), batch[1]
        n = self._fake_batch or x.shape[0]
        self.toggle_optimizer(opt_d)
        opt_d.zero_grad()
        with self.dp_recording():
            real_logits = self.discriminator(x, y)
        per_sample = F.binary_cross_entropy_with_logits(
            real_logits, torch.full_like(real_logits, self.hparams.real_label), reduction="none")
        self.manual_backward(per_sample if self.private is not None else per_sample.mean())  # the private half
        y_fake = self.random_labels(n)
        with torch.no_grad():
            fake = self.generator(self.noise(n), y_fake)
        fake_logits = self.discriminator(fake, y_fake)
        fake_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        self.manual_backward(fake_loss)  # no member data: accumulates unclipped
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        y_fake = self.random_labels(n)
        g_loss = self.generator_adversarial_loss(self.generator(self.noise(n), y_fake), y_fake, None)
        self._step(opt_g, g_loss)
        logs = {"train/g_loss": g_loss.detach(), "train/d_fake_loss": fake_loss.detach()}
        if self.logs_member_metrics and per_sample.numel():
            logs["train/d_loss"] = per_sample.detach().mean() + fake_loss.detach()
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=n)
