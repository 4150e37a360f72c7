"""PIGAN (Hassanzadeh & Tillman, "Generative Models with Information-Theoretic Protection Against Membership
Inference Attacks"): a conditional GAN whose generator is penalized by the mutual information between its samples
and a membership code c, estimated by a classifier Q (Sec. 3, Eq. 9, Algorithm 1)."""

from __future__ import annotations

import time
import warnings
from typing import Any, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_privacy.defenses.gan.gan import GAN, refuse_dp
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.dcgan import CodeClassifier, Layout
from lightning_privacy.privacy.config import DPConfig

QObjective = Literal["eq9", "wrong_code"]


class Coded(Dataset):
    """A members dataset whose samples carry their membership code: (x, y, c)."""

    def __init__(self, base: Dataset, codes: Tensor) -> None:
        if len(base) != codes.numel():
            raise ValueError(f"{len(base)} samples but {codes.numel()} codes")
        self.base, self.codes = base, codes

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        x, y = self.base[i][:2]
        return x, y, int(self.codes[i])


def equal_partition(n: int, parts: int, seed: int) -> Tensor:
    """Algorithm 1, line 1: a seeded random partition of n samples into ``parts`` subsets of equal size (sizes
    differ by at most one); the code of each sample, in the samples' order."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    codes = torch.empty(n, dtype=torch.long)
    codes[perm] = torch.arange(n) * parts // n
    return codes


class CodedMembers:
    """Member codes for a GAN module (PIGAN's c, PrivGAN's generator index): the members loader yields (x, y, c)
    with c from a seeded partition into ``num_codes`` equal subsets, and ``classifier`` (PIGAN's Q, PrivGAN's
    privacy discriminator) is pre-trained on the members with their own c for ``q_pretrain_epochs`` before the
    first epoch (App. A.2; PrivGAN's released code). Needs ``num_codes``, ``classifier`` and the hparams
    ``partition_seed``, ``q_pretrain_epochs``, ``warmup_epochs``, ``lr``, ``beta1``.
    """

    @staticmethod
    def check_codes(name: str, codes: str, num_codes: int, lam: float, warmup_epochs: int,
                    q_pretrain_epochs: int) -> None:
        """N >= 2 (``codes`` names what the N are), λ >= 0, non-negative warm-up and pre-training epochs."""
        if num_codes < 2:
            raise UserInputError(f"{name} needs num_codes (N) >= 2 {codes}; got {num_codes}")
        if lam < 0:
            raise UserInputError(f"lam (λ) must be >= 0; got {lam}")
        if warmup_epochs < 0 or q_pretrain_epochs < 0:
            raise UserInputError(f"warmup_epochs and q_pretrain_epochs must be >= 0; got {warmup_epochs}, "
                                 f"{q_pretrain_epochs}")

    # -- Algorithm 1, line 1 ---------------------------------------------------------------------------------
    def training_loader(self, loader: DataLoader) -> DataLoader:
        """The members loader with each sample's code c: a seeded partition into N equal subsets."""
        n, b = len(loader.dataset), loader.batch_size or 1
        if n < self.num_codes * b:
            raise UserInputError(f"{type(self).__name__} needs at least N x batch size = {self.num_codes} x {b} "
                                 f"members to split into N subsets of a batch each; got {n} members (lower "
                                 "num_codes or the batch size)")
        self.codes = equal_partition(n, self.num_codes, self.hparams.partition_seed)
        self._coded, self._batch_size = Coded(loader.dataset, self.codes), b
        return DataLoader(self._coded, batch_size=b, shuffle=True, num_workers=loader.num_workers,
                          drop_last=loader.drop_last)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs >= 0 and self.hparams.warmup_epochs >= max_epochs:
            warnings.warn(f"{type(self).__name__}: warmup_epochs K = {self.hparams.warmup_epochs} >= max_epochs = "
                          f"{max_epochs}: the code classifier is never trained after its pre-training",
                          UserWarning, stacklevel=2)

    def on_train_start(self) -> None:
        if bool(self.q_pretrained) or self.hparams.q_pretrain_epochs == 0:
            return
        if self._coded is None:
            raise UserInputError(f"{type(self).__name__} needs the members' codes: train it with a PrivacyDataModule "
                                 "(its members loader goes through training_loader)")
        start = time.perf_counter()
        if self.trainer.global_rank == 0:  # under DDP rank 0 pre-trains on all members and the others copy it
            loader = DataLoader(self._coded, batch_size=self._batch_size, shuffle=True)
            optimizer = self.adam(self.classifier.parameters())
            for _ in range(self.hparams.q_pretrain_epochs):
                for x, _, c in loader:
                    self._q_pretrain_step(optimizer, x.to(self.device), c.to(self.device))
        if self.trainer.world_size > 1:
            state = self.trainer.strategy.broadcast({k: v.cpu() for k, v in self.classifier.state_dict().items()})
            self.classifier.load_state_dict(state)
        self.q_pretrained.fill_(True)
        self.log("time/q_pretrain_s", time.perf_counter() - start, rank_zero_only=True)

    def _q_pretrain_step(self, optimizer: torch.optim.Optimizer, x: Tensor, c: Tensor) -> None:
        """One step of Q on members x with their own codes c."""
        optimizer.zero_grad()
        F.cross_entropy(self.classifier(self.to_tanh(x)), c).backward()
        optimizer.step()


class PIGAN(CodedMembers, GAN):
    """Algorithm 1 with the networks of Table 5 (G(z, c, y), D(x, c, y), Q(x) with N outputs).

    1. The members are split into N equal random subsets (``num_codes``, π_i = 1/N); each sample's subset is its
       code c (``training_loader`` attaches it to the batches).
    2. Q is pre-trained on the members with their own c as labels for ``q_pretrain_epochs`` (App. A.2: 50).
    3. D and G train alone for the first ``warmup_epochs`` K (App. A.2: 200 of 300 on Fashion-MNIST).
    4. Then each batch, with ẑ, ĉ, ỹ fresh noise, codes uniform over N and labels uniform:
       - D ascends log D(x, c, y) + log(1 − D(G(ẑ, ĉ, ỹ), ĉ, ỹ))  (line 5);
       - Q ascends log Q_ĉ(G(ẑ, ĉ, ỹ)) on the same generated batch  (line 6);
       - G, with fresh ẑ, ĉ, ỹ (line 7), descends −log D(G(ẑ, ĉ, ỹ), ĉ, ỹ) (non-saturating, Sec. 3.1) + λ·R, where
         ``q_objective`` chooses R:
         * ``eq9`` (default; Eq. 9 and Algorithm 1 line 8): R = log Q_ĉ(G(ẑ, ĉ, ỹ)), the estimate of
           I(G(z, c); c) − H(c) of Eq. 8; G lowers the probability Q gives the true code.
         * ``wrong_code`` (Sec. 3.1, last paragraph; PrivGAN's form): R = −log Q_c̃(G(ẑ, ĉ, ỹ)), the cross-entropy
           on a code c̃ drawn uniformly among the N − 1 wrong ones, which G *descends* — it trains G to make Q
           answer a wrong code, as the released PrivGAN code does (targets drawn among the other generators, loss
           weight +λ). The paper's wording "maximizing the cross-entropy loss for randomly selected incorrect class
           labels" cannot be meant literally: for N = 2 it would push Q toward the true code.
    Q is trained but never read by D; its loss reaches G only (each network's step freezes the others).
    ``dp`` exists to be refused with its reason (on G: post-processing; on Q or D: Q and D both read members).
    """

    key_hparams = ("num_codes", "lam", "warmup_epochs")  # N, λ, K

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        num_codes: int = 2,
        lam: float = 5.0,
        warmup_epochs: int = 200,
        q_pretrain_epochs: int = 50,
        q_objective: QObjective = "eq9",
        partition_seed: int = 0,
        latent_dim: int = 100,
        lr: float = 2e-4,
        beta1: float = 0.5,
        real_label: float = 1.0,
        layout: Layout = "auto",
        dp: Optional[DPConfig] = None,
    ) -> None:
        refuse_dp("PIGAN", dp, "Q is pre-trained on the members with their codes outside D's clipped objective and "
                  "its loss reaches G, so DP-SGD on D alone would not bound what G releases; DPGAN is the DP model")
        self.check_codes("PIGAN", "membership subsets", num_codes, lam, warmup_epochs, q_pretrain_epochs)
        if q_objective not in ("eq9", "wrong_code"):
            raise UserInputError(f"q_objective must be 'eq9' or 'wrong_code'; got {q_objective!r}")
        self.num_codes = num_codes
        super().__init__(num_classes, input_shape, latent_dim, lr, beta1, real_label, layout)
        self.save_hyperparameters(logger=False)
        self.classifier = CodeClassifier(input_shape, num_codes, layout)
        self.register_buffer("q_pretrained", torch.tensor(False))
        self.codes: Optional[Tensor] = None
        self._coded: Optional[Coded] = None
        self._batch_size = 0

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [*super().configure_optimizers(), self.adam(self.classifier.parameters())]

    # -- Algorithm 1, lines 3-8 ------------------------------------------------------------------------------
    def privacy_term(self, fake: Tensor, c: Tensor) -> Tensor:
        """R of the class docstring (``q_objective``): eq9 → mean log Q_c(G(z, c)); wrong_code → the mean
        cross-entropy of Q on a uniformly drawn wrong code."""
        logits = self.classifier(fake)
        if self.hparams.q_objective == "eq9":
            return -F.cross_entropy(logits, c)
        wrong = (c + torch.randint(1, self.num_codes, c.shape, device=c.device)) % self.num_codes
        return F.cross_entropy(logits, wrong)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if len(batch) < 3:
            raise UserInputError("PIGAN's batches carry no membership code: train it with a PrivacyDataModule")
        opt_d, opt_g, opt_q = self.optimizers()
        x, y, c = self.to_tanh(batch[0]), batch[1], batch[2]
        n = x.shape[0]
        warm = self.current_epoch < self.hparams.warmup_epochs
        y_fake, c_fake = self.random_labels(n), self.random_codes(n)
        with torch.no_grad():
            fake = self.generator(self.noise(n), y_fake, c_fake)
        d_loss = self.discriminator_loss(x, y, c, fake, y_fake, c_fake)
        self._step(opt_d, d_loss)
        logs = {"train/d_loss": d_loss.detach()}
        if not warm:  # Q reuses the generated batch D just scored (line 6)
            q_loss = F.cross_entropy(self.classifier(fake), c_fake)
            self._step(opt_q, q_loss)
            logs["train/q_loss"] = q_loss.detach()
        y_fake, c_fake = self.random_labels(n), self.random_codes(n)
        fake = self.generator(self.noise(n), y_fake, c_fake)
        g_loss = self.generator_adversarial_loss(fake, y_fake, c_fake)
        if not warm:
            g_loss = g_loss + self.hparams.lam * self.privacy_term(fake, c_fake)
        self._step(opt_g, g_loss)
        logs["train/g_loss"] = g_loss.detach()
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=n)
