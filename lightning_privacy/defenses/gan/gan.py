"""GAN: the conditional DCGAN (Radford et al. 2016; Mirza & Osindero 2014) the PIGAN paper's baselines build on."""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from lightning_privacy.errors import UserInputError
from lightning_privacy.models.dcgan import ConditionalDiscriminator, ConditionalGenerator, Layout
from lightning_privacy.privacy.config import DPConfig

GENERATOR_TARGETS = ("generator", "generators", "g")
CODE_CLASSIFIER_TARGETS = ("classifier", "q", "code_classifier", "privacy_discriminator")
DP_ON_GENERATOR = ("the generator never reads member data: its updates are functions of z and of the "
                   "discriminator's outputs (post-processing), so noise on G buys no privacy — DPGAN privatises the "
                   "discriminator's real-sample loss, the one step that reads members")
DP_ON_CODE_CLASSIFIER = ("the code classifier Q reads the members with their membership codes (its pre-training) and "
                         "D reads them every step: DP-SGD on Q alone bounds neither, and one DP module cannot "
                         "cover both — train DPGAN for a generative model with a DP guarantee")


def refuse_dp(model: str, dp: Optional[DPConfig], whole_model_reason: str) -> None:
    """Refuse DP-SGD on a GAN that cannot be private, naming the requested ``dp.module``'s own reason (the
    generator: post-processing; Q: it and D both read members); any other target gets ``whole_model_reason``."""
    if dp is None:
        return
    target = dp.module.lower()
    if target in GENERATOR_TARGETS:
        reason = DP_ON_GENERATOR
    elif target in CODE_CLASSIFIER_TARGETS:
        reason = DP_ON_CODE_CLASSIFIER
    else:
        reason = whole_model_reason
    raise UserInputError(f"{model} cannot be trained with DP-SGD (dp.module {dp.module!r}): {reason}")


class GenerativeModule(LightningModule):
    """What every GAN of this package shares: manual optimization, Adam hyperparameters, the data scale, noise
    and label draws, and a step that updates one network alone.

    Images: generators produce [-1, 1] (tanh); batches arrive normalized by the datamodule (mean, std), which
    ``setup`` reads, so discriminators see real and generated images on one scale. ``sample`` returns images
    normalized like the datamodule's, comparable with real samples from its loaders (the MC attacks).
    """

    key_hparams: ClassVar[tuple[str, ...]] = ()
    """Key hyperparameters (``__init__`` argument names), tagged ``hp.<name>`` on each run (as the classifiers')."""
    ddp_unused_parameters: ClassVar[bool] = True  # one network per backward: the CLI turns ddp into
    # ddp_find_unused_parameters_true (as for AdvReg and DAP); _check_ddp refuses plain ddp outside the CLI

    def __init__(self, num_classes: int, input_shape: Sequence[int], latent_dim: int, lr: float, beta1: float,
                 real_label: float) -> None:
        super().__init__()
        if lr <= 0:
            raise UserInputError(f"lr must be > 0; got {lr}")
        if latent_dim < 1:
            raise UserInputError(f"latent_dim must be >= 1; got {latent_dim}")
        if not 0.5 < real_label <= 1.0:
            raise UserInputError(f"real_label (one-sided label smoothing) must be in (0.5, 1]; got {real_label}")
        self.automatic_optimization = False
        self.num_classes, self.input_shape, self.latent_dim = num_classes, tuple(input_shape), latent_dim
        c = input_shape[0]
        self.register_buffer("data_mean", torch.full((c, 1, 1), 0.5))
        self.register_buffer("data_std", torch.full((c, 1, 1), 0.5))

    def adam(self, params: Any) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=self.hparams.lr, betas=(self.hparams.beta1, 0.999))

    # -- data scale, DDP ------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self._trainer is not None:
            self._check_ddp()
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "mean") and hasattr(dm, "std"):
            self.data_mean.copy_(torch.tensor(dm.mean, dtype=torch.float32).view(-1, 1, 1))
            self.data_std.copy_(torch.tensor(dm.std, dtype=torch.float32).view(-1, 1, 1))

    def _check_ddp(self) -> None:
        """Each backward of a GAN step updates one network while the others are frozen; under DDP that needs
        ``find_unused_parameters`` so the frozen networks' buckets are marked ready and every step's gradients are
        all-reduced (Lightning's plain ``ddp`` stops at the second backward)."""
        from lightning.pytorch.strategies import DDPStrategy

        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy) and not getattr(strategy, "_ddp_kwargs", {}).get("find_unused_parameters"):
            raise UserInputError(f"{type(self).__name__} steps one network per backward (manual optimization, the "
                                 "others frozen), so DDP must find the unused ones: set trainer.strategy: "
                                 "ddp_find_unused_parameters_true (stack conf/trainer/ddp_gan.yaml after "
                                 "conf/trainer/ddp.yaml, or after ddp_dp.yaml for DPGAN)")

    def on_fit_start(self) -> None:
        """Under DDP, rank r > 0 reseeds its global generator with the seed + r, so the ranks draw different z and
        labels (the same seed on every rank would give every rank the same fake batch); rank 0 keeps the seed, so
        a single-process fit is unchanged."""
        if self.trainer.world_size > 1 and self.trainer.global_rank > 0:
            torch.manual_seed(torch.initial_seed() + self.trainer.global_rank)

    def to_tanh(self, x: Tensor) -> Tensor:
        """Datamodule-normalized images → [-1, 1]."""
        return (x * self.data_std + self.data_mean) * 2 - 1

    def from_tanh(self, x: Tensor) -> Tensor:
        """[-1, 1] → datamodule-normalized images."""
        return ((x + 1) / 2 - self.data_mean) / self.data_std

    # -- the networks ----------------------------------------------------------------------------------------
    def noise(self, n: int) -> Tensor:
        return torch.randn(n, self.latent_dim, device=self.device)

    def random_labels(self, n: int) -> Tensor:
        return torch.randint(0, self.num_classes, (n,), device=self.device)

    def _step(self, optimizer: Any, loss: Tensor) -> None:
        """One update of ``optimizer``'s network alone (the others' parameters are frozen while its loss is
        backpropagated, so no gradient of this loss reaches them)."""
        self.toggle_optimizer(optimizer)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.untoggle_optimizer(optimizer)


class GAN(GenerativeModule):
    """Conditional DCGAN (PIGAN paper, Table 4), manual optimization with one Adam per network (lr 2e-4, β1 0.5,
    App. A.1) and z ~ N(0, I) of size ``latent_dim``. Each batch: one D step on
    −[log D(x, y) + log(1 − D(G(z, ỹ), ỹ))], then one G step on the non-saturating −log D(G(z, ỹ), ỹ) with fresh
    z (Goodfellow et al. 2014), ỹ uniform over the classes. ``real_label`` < 1 is one-sided label smoothing (the
    paper's CIFAR-10 setting: 0.9).
    """

    num_codes: int = 0
    """Membership codes G and D take (PIGAN's c); 0: none."""

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 100,
        lr: float = 2e-4,
        beta1: float = 0.5,
        real_label: float = 1.0,
        layout: Layout = "auto",
    ) -> None:
        super().__init__(num_classes, input_shape, latent_dim, lr, beta1, real_label)
        self.save_hyperparameters(logger=False)
        self.generator = ConditionalGenerator(input_shape, num_classes, latent_dim, self.num_codes, layout)
        self.discriminator = ConditionalDiscriminator(input_shape, num_classes, self.num_codes, layout)

    def random_codes(self, n: int) -> Optional[Tensor]:
        return torch.randint(0, self.num_codes, (n,), device=self.device) if self.num_codes else None

    @torch.no_grad()
    def sample(self, n: int, labels: Optional[Tensor] = None, codes: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``n`` generated images (datamodule-normalized) and their labels (uniform unless given), in eval mode."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            y = labels.to(self.device) if labels is not None else self.random_labels(n)
            c = codes.to(self.device) if codes is not None else self.random_codes(n)
            return self.from_tanh(self.generator(self.noise(n), y, c)), y
        finally:
            self.generator.train(was_training)

    @torch.no_grad()
    def discriminator_scores(self, x: Tensor, y: Tensor) -> Tensor:
        """D's probability that each (datamodule-normalized) image is real, (n, k): one column per membership
        code (PIGAN) or discriminator (PrivGAN); the WB and TVD attacks reduce them by max or mean."""
        was_training = self.discriminator.training
        self.discriminator.eval()
        try:
            x, y = self.to_tanh(x.to(self.device)), y.to(self.device)
            if not self.num_codes:
                return torch.sigmoid(self.discriminator(x, y))[:, None]
            cols = [torch.sigmoid(self.discriminator(x, y, torch.full_like(y, c))) for c in range(self.num_codes)]
            return torch.stack(cols, dim=1)
        finally:
            self.discriminator.train(was_training)

    # -- training --------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.adam(self.discriminator.parameters()), self.adam(self.generator.parameters())]

    def discriminator_loss(self, x: Tensor, y: Tensor, c: Optional[Tensor], fake: Tensor, y_fake: Tensor,
                           c_fake: Optional[Tensor]) -> Tensor:
        real_logits = self.discriminator(x, y, c) if self.num_codes else self.discriminator(x, y)
        fake_logits = self.discriminator(fake, y_fake, c_fake) if self.num_codes else self.discriminator(fake, y_fake)
        real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.hparams.real_label))
        return real + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))

    def generator_adversarial_loss(self, fake: Tensor, y: Tensor, c: Optional[Tensor]) -> Tensor:
        """The non-saturating −log D(G(z, ·), ·)."""
        logits = self.discriminator(fake, y, c) if self.num_codes else self.discriminator(fake, y)
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_d, opt_g = self.optimizers()[:2]
        x, y = self.to_tanh(batch[0]), batch[1]
        n = x.shape[0]
        y_fake = self.random_labels(n)
        with torch.no_grad():
            fake = self.generator(self.noise(n), y_fake)
        d_loss = self.discriminator_loss(x, y, None, fake, y_fake, None)
        self._step(opt_d, d_loss)
        y_fake = self.random_labels(n)
        g_loss = self.generator_adversarial_loss(self.generator(self.noise(n), y_fake), y_fake, None)
        self._step(opt_g, g_loss)
        self.log_dict({"train/d_loss": d_loss.detach(), "train/g_loss": g_loss.detach()}, on_step=False,
                      on_epoch=True, batch_size=n)
