"""DAP: Discriminative Adversarial Privacy (DAP paper Sec. 3, Eq. 2-3; DAPt / DAPv settings of Sec. 4)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_privacy.defenses.bank import MIN_HALF, BankModel, ModelBank
from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.binary import binary_accuracy, fit_binary
from lightning_privacy.models.discriminator import Discriminator, discriminator_features
from lightning_privacy.models.predict import predict_logits

ShadowRole = Literal["nonmembers", "validation"]


@dataclass
class DiscriminatorData:
    """DATA_MIA: one row per (shadow, misclassified sample) with D's features and the IN (1) / OUT (0) label."""

    features: Tensor
    member: Tensor
    shadow: Tensor
    index: Tensor

    def __len__(self) -> int:
        return int(self.member.numel())


def discriminator_dataset(shadows: Sequence[BankModel], datamodule: Any) -> DiscriminatorData:
    """Ground truth, prediction and loss of every shadow on every sample of its pool; only the misclassified
    ones are kept (DAP paper Sec. 3), labelled by membership in that shadow's training half."""
    parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    for k, shadow in enumerate(shadows):
        logits, labels = predict_logits(shadow.model, datamodule.index_dataloader(shadow.pool))
        wrong = logits.argmax(dim=1) != labels
        parts.append((discriminator_features(logits[wrong], labels[wrong]), shadow.in_mask[wrong].float(),
                      torch.full((int(wrong.sum()),), k, dtype=torch.long), shadow.pool[wrong]))
    data = DiscriminatorData(*(torch.cat(column) for column in zip(*parts))) if parts else None
    if data is None or len(data) == 0:
        raise UserInputError(
            f"DAP's {len(shadows)} shadow models misclassify none of their samples, so the discriminator has no "
            "training data (it learns from misclassified samples only, DAP paper Sec. 3); expected at least one; "
            "lower model.init_args.shadow_max_epochs or choose a larger/harder shadow_role")
    return data


def train_discriminator(disc: Discriminator, data: DiscriminatorData, *, max_epochs: int, lr: float, seed: int,
                        batch_size: int = 32, patience: Optional[int] = 25) -> tuple[float, int]:
    """Fit D on DATA_MIA (DAP paper Sec. 4: Adam, batch 32, to convergence with early stopping on validation
    accuracy): a seeded 10 % of the rows is D's validation split; plain BCE as in the authors' code. Returns D's
    training accuracy at threshold 0.5 and the epochs it trained."""
    device = next(disc.parameters()).device
    x, t = data.features.to(device), data.member.to(device)
    order = torch.randperm(len(t), generator=torch.Generator().manual_seed(seed + 17)).to(device)
    n_val = max(1, len(t) // 10) if patience is not None and len(t) >= 20 else 0
    val, train = order[:n_val], order[n_val:]
    disc.standardize_with(x[train])
    epochs = fit_binary(disc, x[train], t[train], epochs=max_epochs, lr=lr, batch_size=batch_size, seed=seed,
                        balanced=False, validation=(x[val], t[val]) if n_val else None,
                        patience=patience if n_val else None)
    return binary_accuracy(disc, x[train], t[train]), epochs


class DAP(ClassifierDefense):
    """C_DAP: each batch, cross-entropy updates all weights; then the *updated* classifier's misclassified
    predictions go through a frozen discriminator and beta * adversarial loss updates the last layer only (Eq. 2;
    beta: Eq. 3). One Adam optimizer serves both steps, as in the authors' released code: its moment estimates
    see the cross-entropy and the beta-weighted adversarial gradients of the last layer together, so beta sets
    their relative weight (a separate Adam for step 2 would normalize beta away).

    DAPt trains the K shadows on the non-member (test) role, DAPv on the validation role (Sec. 4). The shadows
    are ERM models with this defense's network, trained to convergence with early stopping (patience
    ``shadow_patience`` on validation accuracy, Sec. 4) for at most ``shadow_max_epochs``.
    ``stale_features_approximation`` (off by default) feeds step (2) the penultimate features of step (1)'s
    forward, one update stale, instead of a second forward of the updated network: faster, not the paper's order.
    """

    dp_refusal = ("its adversarial step feeds the members' misclassified predictions through the discriminator "
                  "and updates the last layer a second time per batch, outside the clipped per-sample objective")
    key_hparams = ("r", "num_shadows", "shadow_role")
    ddp_unused_parameters = True  # step (2)'s loss reaches the last layer only

    def __init__(
        self,
        num_classes: int = 10,
        shadow_role: ShadowRole = "nonmembers",
        num_shadows: int = 10,
        shadow_max_epochs: int = 10,
        shadow_patience: Optional[int] = 25,
        r: float = 0.5,
        disc_max_epochs: int = 100,
        disc_patience: Optional[int] = 25,
        disc_batch_size: int = 32,
        disc_lr: float = 1e-3,
        seed: int = 0,
        shadow_cache_dir: Optional[str] = None,
        stale_features_approximation: bool = False,
        **kwargs: Any,
    ) -> None:
        if shadow_role not in ("nonmembers", "validation"):
            raise UserInputError(f"shadow_role must be 'nonmembers' (DAPt) or 'validation' (DAPv); got {shadow_role!r}")
        if r < 0:
            raise UserInputError(f"r (the weight of the adversarial loss, DAP Eq. 3) must be >= 0; got {r}")
        for name, value in (("num_shadows", num_shadows), ("shadow_max_epochs", shadow_max_epochs),
                            ("disc_max_epochs", disc_max_epochs), ("disc_batch_size", disc_batch_size),
                            ("shadow_patience", 1 if shadow_patience is None else shadow_patience),
                            ("disc_patience", 1 if disc_patience is None else disc_patience)):
            if value < 1:
                raise UserInputError(f"{name} must be >= 1; got {value}")
        if disc_lr <= 0:
            raise UserInputError(f"disc_lr must be > 0; got {disc_lr}")
        super().__init__(num_classes=num_classes, **kwargs)
        self.automatic_optimization = False
        self.discriminator = Discriminator(num_classes).requires_grad_(False).eval()
        self.register_buffer("beta", torch.tensor(1.0))  # Eq. 3: 1 in the first epoch
        self.disc_train_acc = float("nan")
        self.disc_samples = 0
        self.disc_epochs = 0
        self.shadow_epochs: list[int] = []
        self._warned_beta = False

    def train(self, mode: bool = True) -> "DAP":
        """Lightning switches modules to train mode each epoch; the frozen D stays in eval mode."""
        super().train(mode)
        self.discriminator.eval()
        return self

    # -- before training: K shadows -> DATA_MIA -> D, then frozen (Sec. 3) --------------------------------------

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "role_indices"):
            raise UserInputError("DAP trains its shadow models on a data role, so it needs a PrivacyDataModule "
                                 "passed to fit (datamodule=...); got none (a shadow bank with shadow_recipe: "
                                 "target fits plain dataloaders: use shadow_recipe: erm to audit DAP)")
        self.fit_discriminator(dm)

    def shadow_template(self) -> ClassifierDefense:
        """The shadows' recipe: ERM with this defense's network, input shape and optimizer settings."""
        from lightning_privacy.defenses.erm import ERM

        hp = self.hparams
        return ERM(num_classes=hp.num_classes, input_shape=hp.input_shape, net=hp.net, lr=hp.lr,
                   weight_decay=hp.weight_decay)

    def fit_discriminator(self, dm: Any) -> DiscriminatorData:
        """Train the K shadows on balanced halves of ``shadow_role``, build DATA_MIA, train and freeze D."""
        hp = self.hparams
        pool = dm.role_indices(hp.shadow_role)
        if pool.numel() // 2 < MIN_HALF:
            raise UserInputError(
                f"DAP's shadow_role {hp.shadow_role!r} has {pool.numel()} samples: too small for {hp.num_shadows} "
                f"shadow models trained on halves (each half needs at least {MIN_HALF}, so >= {2 * MIN_HALF} "
                f"samples); enlarge data.init_args.{hp.shadow_role} or use the other shadow_role")
        bank = ModelBank(target=self.shadow_template(), datamodule=dm, recipe="target", epochs=hp.shadow_max_epochs,
                         patience=hp.shadow_patience, monitor="val/acc", seed=hp.seed,
                         accelerator="cpu" if self.device.type == "cpu" else "auto",
                         cache_dir=Path(hp.shadow_cache_dir) if hp.shadow_cache_dir else None)
        with torch.random.fork_rng(devices=[]):  # the shadows' seeding must not reseed C_DAP's own training
            shadows = bank.train(f"dap-{hp.shadow_role}", pool, hp.num_shadows)
        self.shadow_epochs = [s.epochs_trained for s in shadows]
        data = discriminator_dataset(shadows, dm)
        self.disc_train_acc, self.disc_epochs = train_discriminator(
            self.discriminator, data, max_epochs=hp.disc_max_epochs, lr=hp.disc_lr, seed=hp.seed,
            batch_size=hp.disc_batch_size, patience=hp.disc_patience)
        self.disc_samples = len(data)
        return data

    # -- training: Eq. 2 with manual optimization --------------------------------------------------------------

    def adversarial_loss(self, logits: Tensor, y: Tensor) -> Optional[Tensor]:
        """-log(1 - D(C(x), y)) on the misclassified samples (non-saturating form of Eq. 2's maximised D error),
        i.e. BCE against "non-member"; ``None`` when every sample is classified correctly."""
        wrong = logits.argmax(dim=1) != y
        if not bool(wrong.any()):
            return None
        member_logits = self.discriminator.score(logits[wrong], y[wrong])
        return F.binary_cross_entropy_with_logits(member_logits, torch.zeros_like(member_logits))

    def adversarial_step(self, penultimate: Tensor, y: Tensor, optimizer: Any) -> Optional[Tensor]:
        """Step (2): beta * adversarial loss on the last layer's predictions from these (detached) penultimate
        features; only the last layer receives a gradient, so the shared optimizer updates only it."""
        adv = self.adversarial_loss(self.last_layer(penultimate.detach()), y)
        if adv is not None:
            optimizer.zero_grad()  # set_to_none: the other layers have no gradient and are skipped
            self.manual_backward(self.beta * adv)
            optimizer.step()
        return None if adv is None else adv.detach()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        optimizer = self.optimizers()
        # (1) categorical cross-entropy updates all the classifier's weights
        penultimate = self.penultimate(x)
        logits = self.last_layer(penultimate)
        ce = self.loss(logits, y)
        optimizer.zero_grad()
        self.manual_backward(ce)
        optimizer.step()
        # (2) the updated classifier's misclassified predictions through the frozen D: beta * adversarial loss
        # updates the last layer. Its input needs no gradient, so the second forward runs without autograd.
        if not self.hparams.stale_features_approximation:
            with torch.no_grad():
                penultimate = self.penultimate(x)
        adv = self.adversarial_step(penultimate, y, optimizer)
        self.log_train_metrics(ce, logits, y)
        if adv is not None:
            self.log("dap/adv_loss", adv, on_step=False, on_epoch=True)
        return ce.detach()

    # -- beta (Eq. 3): r * validation CE / validation adversarial loss, at the end of each epoch -----------------

    def balancing_beta(self, logits: Tensor, labels: Tensor) -> Optional[float]:
        """Eq. 3 for t > 0 from validation logits; ``None`` when it is undefined (no misclassified samples)."""
        with torch.no_grad():
            adv = self.adversarial_loss(logits.to(self.device), labels.to(self.device))
        if adv is None or not float(adv) > 0:
            return None
        return self.hparams.r * float(F.cross_entropy(logits, labels)) / float(adv)

    def on_train_epoch_start(self) -> None:
        self.log("dap/beta", float(self.beta))
        self.log("dap/disc_train_acc", self.disc_train_acc)
        self.log("dap/disc_samples", float(self.disc_samples))
        self.log("dap/disc_epochs", float(self.disc_epochs))
        if self.shadow_epochs:
            self.log("dap/shadow_epochs_mean", sum(self.shadow_epochs) / len(self.shadow_epochs))

    def on_train_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        val = dm.role_indices("validation")
        beta = self.balancing_beta(*predict_logits(self, dm.index_dataloader(val))) if val.numel() else None
        if beta is None:
            if not self._warned_beta:
                warnings.warn("DAP keeps beta at its previous value: the validation role is empty or has no "
                              "misclassified samples, so Eq. 3 is undefined", stacklevel=2)
                self._warned_beta = True
            return
        self.beta.fill_(beta)

    def configure_optimizers(self) -> Any:
        """One Adam on the classifier (D excluded) for both steps, as the authors' code: a separate Adam for the
        last-layer step would be invariant to beta's scale."""
        hp = self.hparams
        return torch.optim.Adam(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
