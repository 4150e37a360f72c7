"""PrivGAN (Mukherjee, Xu, Trivedi, Patowary & Ferres, PoPETs 2021), the PIGAN paper's baseline: N generator-
discriminator pairs on disjoint member subsets and a privacy discriminator that tells the generators apart."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_privacy.defenses.gan.gan import GenerativeModule, refuse_dp
from lightning_privacy.defenses.gan.pigan import CodedMembers
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.dcgan import CodeClassifier, ConditionalDiscriminator, ConditionalGenerator, Layout
from lightning_privacy.privacy.config import DPConfig


class PrivGAN(CodedMembers, GenerativeModule):
    """N pairs (G_i, D_i) with the conditional DCGAN of Table 4, pair i trained on the i-th of N equal random subsets
    of the members (c = i), and a privacy discriminator D_p (the trunk of PIGAN's Q, N outputs).

    - D_p is pre-trained on the members with their subset index as label (``q_pretrain_epochs``; App. A.2: 50).
    - Each batch, for each i: D_i ascends log D_i(x, y) + log(1 − D_i(G_i(z, ỹ), ỹ)) on the batch's members of
      subset i only; after ``warmup_epochs`` (App. A.2: K = 100), D_p descends the cross-entropy of the index of
      the generator that made each sample; then every G_i descends −log D_i(G_i(z, ỹ), ỹ) + λ·CE(D_p(G_i(z, ỹ)), j)
      with j drawn uniformly among the other indices (fool D_p into naming another generator). As in the released
      code (microsoft/privGAN, ``privGAN``), the generators' λ term is on from the start; the warm-up only delays
      D_p's training. ``lam``: λ (the PIGAN paper's PrivGAN setting: 0.01 … 1).
    One Adam per network (2N + 1 optimizers: D_0…D_{N−1}, G_0…G_{N−1}, D_p). ``dp`` exists to be refused with
    its reason (DPGAN is the DP model).
    """

    key_hparams = ("num_codes", "lam", "warmup_epochs")  # N, λ, K

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        num_codes: int = 2,
        lam: float = 1.0,
        warmup_epochs: int = 100,
        q_pretrain_epochs: int = 50,
        partition_seed: int = 0,
        latent_dim: int = 100,
        lr: float = 2e-4,
        beta1: float = 0.5,
        real_label: float = 1.0,
        layout: Layout = "auto",
        dp: Optional[DPConfig] = None,
    ) -> None:
        refuse_dp("PrivGAN", dp, "its privacy discriminator is pre-trained on the members with their subset index "
                  "and N discriminators read the members, more than one DP module can cover; DPGAN is the DP model")
        self.check_codes("PrivGAN", "generator-discriminator pairs", num_codes, lam, warmup_epochs,
                         q_pretrain_epochs)
        super().__init__(num_classes, input_shape, latent_dim, lr, beta1, real_label)
        self.save_hyperparameters(logger=False)
        self.num_codes = num_codes
        self.generators = nn.ModuleList(ConditionalGenerator(input_shape, num_classes, latent_dim, 0, layout)
                                        for _ in range(num_codes))
        self.discriminators = nn.ModuleList(ConditionalDiscriminator(input_shape, num_classes, 0, layout)
                                            for _ in range(num_codes))
        self.classifier = CodeClassifier(input_shape, num_codes, layout)
        self.register_buffer("q_pretrained", torch.tensor(False))
        self.codes: Optional[Tensor] = None
        self._coded = None
        self._batch_size = 0

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*(self.adam(d.parameters()) for d in self.discriminators),
                *(self.adam(g.parameters()) for g in self.generators), self.adam(self.classifier.parameters())]

    @torch.no_grad()
    def sample(self, n: int, labels: Optional[Tensor] = None, codes: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``n`` images, generator i making those with code i (uniform unless ``codes`` is given), normalized like
        the datamodule's; labels uniform unless given."""
        y = labels.to(self.device) if labels is not None else self.random_labels(n)
        c = codes.to(self.device) if codes is not None else torch.randint(0, self.num_codes, (n,), device=self.device)
        out = torch.empty(n, *self.input_shape, device=self.device)
        for i, g in enumerate(self.generators):
            pick = c == i
            if bool(pick.any()):
                was = g.training
                g.eval()
                out[pick] = g(self.noise(int(pick.sum())), y[pick])
                g.train(was)
        return self.from_tanh(out), y

    @torch.no_grad()
    def discriminator_scores(self, x: Tensor, y: Tensor) -> Tensor:
        """(n, N): each discriminator's probability that the image is real (WB: max or mean over them)."""
        x, y = self.to_tanh(x.to(self.device)), y.to(self.device)
        cols = []
        for d in self.discriminators:
            was = d.training
            d.eval()
            cols.append(torch.sigmoid(d(x, y)))
            d.train(was)
        return torch.stack(cols, dim=1)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if len(batch) < 3:
            raise UserInputError("PrivGAN's batches carry no subset index: train it with a PrivacyDataModule")
        opts = self.optimizers()
        n_pairs = self.num_codes
        opt_d, opt_g, opt_p = opts[:n_pairs], opts[n_pairs:2 * n_pairs], opts[2 * n_pairs]
        x, y, c = self.to_tanh(batch[0]), batch[1], batch[2]
        n = x.shape[0]
        logs: dict[str, Tensor] = {}
        fakes, fake_codes = [], []
        for i in range(n_pairs):
            mine = c == i  # pair i reads only its own subset
            m = int(mine.sum())
            y_fake = self.random_labels(max(m, 1))
            with torch.no_grad():
                fake = self.generators[i](self.noise(y_fake.shape[0]), y_fake)
            fakes.append(fake)
            fake_codes.append(torch.full((fake.shape[0],), i, device=self.device))
            if m == 0:
                continue
            real_logits = self.discriminators[i](x[mine], y[mine])
            fake_logits = self.discriminators[i](fake, y_fake)
            d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.hparams.real_label))
                      + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            self._step(opt_d[i], d_loss)
            logs[f"train/d{i}_loss"] = d_loss.detach()
        if self.current_epoch >= self.hparams.warmup_epochs:
            p_loss = F.cross_entropy(self.classifier(torch.cat(fakes)), torch.cat(fake_codes))
            self._step(opt_p, p_loss)
            logs["train/p_loss"] = p_loss.detach()
        for i in range(n_pairs):
            y_fake = self.random_labels(max(n // n_pairs, 1))
            fake = self.generators[i](self.noise(y_fake.shape[0]), y_fake)
            logits = self.discriminators[i](fake, y_fake)
            other = (i + torch.randint(1, n_pairs, (fake.shape[0],), device=self.device)) % n_pairs
            g_loss = (F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                      + self.hparams.lam * F.cross_entropy(self.classifier(fake), other))
            self._step(opt_g[i], g_loss)
            logs[f"train/g{i}_loss"] = g_loss.detach()
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=n)
