"""``audit.gan_fidelity``: the fidelity metrics and downstream accuracy of a generative model when fit ends.

A classifier of the dataset itself (the papers' CNN trained on ``classifier_role``, real data disjoint from the
GAN's members) gives the features and class probabilities of a Fréchet *classifier* distance, Intra-FID and IS:
``gan/fid_domain``, ``gan/intra_fid_domain``, ``gan/is_domain`` (not Inception figures). With pytorch-fid's weights
file (``inception_weights`` or ``$TORCH_HOME/hub/checkpoints``; never downloaded) the Inception ones too: ``gan/fid``
and ``gan/intra_fid`` on the 2048-d pool features, ``gan/is`` on the 1008-way logits; without it they are skipped
with one warning (``require_inception: true``: an error). Real statistics come from ``real_role``; the downstream
classifier (App. A.2) trains on ``downstream_samples`` generated labelled images and is tested on ``test_role``:
``gan/downstream_acc``. A sample grid (one row per class) is attached as ``audit/gan_samples.png``, and one per
membership code (PIGAN) or generator (PrivGAN) as ``audit/gan_samples_code_<c>.png``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor

from lightning_privacy.callbacks.audit import AuditCallback
from lightning_privacy.defenses.evaluator import evaluation_classifier, train_classifier
from lightning_privacy.errors import UserInputError
from lightning_privacy.metrics.fidelity import (
    accuracy,
    classifier_outputs,
    feature_outputs,
    frechet_distance,
    inception_score,
    intra_fid,
)
from lightning_privacy.models.inception import (
    INCEPTION_FILE,
    INCEPTION_SIZE,
    INCEPTION_URL,
    InceptionFeatures,
    find_inception_weights,
    hub_checkpoints_dir,
    load_inception,
)
from lightning_privacy.results import AuditResult


@dataclass
class GanFidelityConfig:
    """``audit.gan_fidelity`` settings: ``samples`` generated images for FID / Intra-FID / IS (the paper: 10⁴ on
    Fashion-MNIST), the roles of the domain classifier's training data, of the real statistics and of the
    downstream test, the two classifiers' epochs (the paper's downstream classifier: 50; Adam 2e-4, β1 0.5), the
    domain classifier's Adam lr (β1 0.9, the project's ERM recipe) and IS splits.

    The domain classifier is ``defenses/evaluator.py``'s evaluation classifier, shared with the inversion audit
    and cached in ``cache_dir`` (null: none) by the split hash, the role's images, the network and the settings.

    Inception (``gan/fid``, ``gan/is``, ``gan/intra_fid``): ``inception_weights`` is pytorch-fid's
    ``pt_inception-2015-12-05-6726825d.pth`` (or a folder holding it; default: look in
    ``$TORCH_HOME/hub/checkpoints``); absent, the three are skipped with one warning, or refused with
    ``require_inception: true``. ``inception_check_hash: false`` accepts a file whose sha256 does not start with
    6726825d (weights converted yourself); keys and shapes are always checked. ``inception_samples``: generated (and
    at most as many real) images through Inception (default ``samples``; 299 px Inception is slow on a CPU)."""

    samples: int = 10_000
    classifier_role: str = "shadow"
    real_role: str = "validation"
    test_role: str = "nonmembers"
    classifier_epochs: int = 10
    classifier_lr: float = 1e-3
    downstream_samples: int = 10_000
    downstream_epochs: int = 50
    is_splits: int = 10
    seed: int = 0
    inception_weights: Optional[str] = None
    require_inception: bool = False
    inception_check_hash: bool = True
    inception_samples: Optional[int] = None
    cache_dir: Optional[str] = "outputs/evaluator"

    def __post_init__(self) -> None:
        for key in ("samples", "classifier_epochs", "downstream_samples", "downstream_epochs", "is_splits"):
            if getattr(self, key) < 1:
                raise UserInputError(f"audit.gan_fidelity.{key} must be >= 1; got {getattr(self, key)}")
        if self.inception_samples is not None and self.inception_samples < 2:
            raise UserInputError(f"audit.gan_fidelity.inception_samples must be >= 2; got {self.inception_samples}")
        roles = (self.classifier_role, self.real_role, self.test_role)
        if "members" in roles:
            raise UserInputError("audit.gan_fidelity's roles must be disjoint from the GAN's members")


def _role(dm, role: str) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*[(x, y) for x, y in dm.role_dataloader(role)])
    return torch.cat(xs), torch.cat(ys)


def _generate(model, n: int, chunk: int = 500, code: Optional[int] = None) -> tuple[Tensor, Tensor]:
    labels = torch.arange(n) % model.num_classes  # balanced classes
    codes = None if code is None else torch.full((n,), code, dtype=torch.long)
    xs = [model.sample(len(labels[s:s + chunk]), labels=labels[s:s + chunk],
                       codes=None if codes is None else codes[s:s + chunk])[0].cpu() for s in range(0, n, chunk)]
    return torch.cat(xs), labels


class GanFidelity(AuditCallback):
    """Emits ``AuditResult(name="gan_fidelity")`` on rank 0 when fit ends."""

    def __init__(self, config: Optional[GanFidelityConfig] = None) -> None:
        super().__init__()
        self.config = config or GanFidelityConfig()
        self._inception: Optional[InceptionFeatures] = None
        self._inception_path: Optional[str] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not callable(getattr(pl_module, "sample", None)):
            raise UserInputError(f"audit.gan_fidelity measures generative models; {type(pl_module).__name__} is not one")
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "role_dataloader"):
            raise UserInputError("audit.gan_fidelity needs a PrivacyDataModule")
        dm.setup("fit")
        sizes, c = dm.splits.sizes(), self.config
        for key in ("classifier_role", "real_role", "test_role"):
            role = getattr(c, key)
            if sizes.get(role, 0) < 2:
                raise UserInputError(f"audit.gan_fidelity.{key} is {role!r}, which has {sizes.get(role, 0)} samples: "
                                     f"give it some, e.g. --data.init_args.{role} 0.1")
        self.prepare_inception(warn=trainer.is_global_zero)

    def prepare_inception(self, warn: bool = True) -> Optional[InceptionFeatures]:
        """Load (once) and check the Inception weights before training; absent: one warning, or an error with
        ``require_inception``. A wrong file is an error either way."""
        c = self.config
        path = find_inception_weights(c.inception_weights)
        if path is None:
            self._inception = self._inception_path = None
            where = (f"Put pytorch-fid's {INCEPTION_FILE} ({INCEPTION_SIZE}, from {INCEPTION_URL}) into "
                     f"{hub_checkpoints_dir()} ($TORCH_HOME/hub/checkpoints) or point "
                     "audit.gan_fidelity.inception_weights at it")
            if c.require_inception:
                raise UserInputError(f"audit.gan_fidelity.require_inception is true but {INCEPTION_FILE} was not "
                                     f"found (nothing is downloaded). {where}")
            if warn:
                warnings.warn(f"gan/fid, gan/is and gan/intra_fid are skipped: {INCEPTION_FILE} was not found and "
                              f"is never downloaded. {where}; the gan/*_domain metrics still run", UserWarning,
                              stacklevel=2)
            return None
        if self._inception is None or self._inception_path != str(path):
            self._inception = load_inception(path, check_hash=c.inception_check_hash)
            self._inception_path = str(path)
        return self._inception

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or trainer.interrupted:
            return
        self.emit(trainer, self.measure(trainer.datamodule, pl_module))

    def measure(self, dm, model) -> AuditResult:
        c = self.config
        torch.manual_seed(c.seed)
        k = model.num_classes
        x_cls, y_cls = _role(dm, c.classifier_role)
        domain = evaluation_classifier(  # the inversion audit's evaluation classifier: one helper, one cache
            x_cls, y_cls, num_classes=k, epochs=c.classifier_epochs, lr=c.classifier_lr, beta1=0.9, seed=c.seed,
            key={"dataset": getattr(dm, "dataset_name", type(dm).__name__), "split": dm.splits.digest(),
                 "role": c.classifier_role},
            cache_dir=c.cache_dir or None)
        x_real, y_real = _role(dm, c.real_role)
        x_fake, y_fake = _generate(model, c.samples)
        f_real, _ = classifier_outputs(domain, x_real)
        f_fake, logits_fake = classifier_outputs(domain, x_fake)
        metrics = {"gan/fid_domain": frechet_distance(f_real, f_fake),
                   "gan/is_domain": inception_score(logits_fake, splits=min(c.is_splits, c.samples))[0]}
        try:
            metrics["gan/intra_fid_domain"] = intra_fid(f_real, y_real, f_fake, y_fake)
        except ValueError:
            pass  # a class with fewer than two real samples: no Intra-FID (too few real samples)
        tags = {"gan_fidelity.classifier_role": c.classifier_role,
                "gan_fidelity.real_role": c.real_role, "gan_fidelity.test_role": c.test_role,
                "gan_fidelity.inception": self._inception_path or "absent"}
        if self._inception is not None:
            metrics.update(self.inception_metrics(dm, model, x_real, y_real))
        x_down, y_down = _generate(model, c.downstream_samples)
        downstream = train_classifier(x_down, y_down, num_classes=k, epochs=c.downstream_epochs, lr=2e-4, beta1=0.5,
                                      seed=c.seed)
        x_test, y_test = _role(dm, c.test_role)
        metrics["gan/downstream_acc"] = accuracy(downstream, x_test, y_test)
        metrics["gan/domain_classifier_acc"] = accuracy(domain, x_test, y_test)
        artifacts = {"audit/gan_samples.png": _grid_writer(_generate(model, 8 * k)[0], k)}
        for code in range(getattr(model, "num_codes", 0)):  # PIGAN's codes c, PrivGAN's generators
            artifacts[f"audit/gan_samples_code_{code}.png"] = _grid_writer(_generate(model, 8 * k, code=code)[0], k)
        return AuditResult(name="gan_fidelity", metrics=metrics, artifacts=artifacts,
                           tags=tags,
                           summary=("gan/fid_domain", "gan/intra_fid_domain", "gan/downstream_acc"))


    def inception_metrics(self, dm, model, x_real: Tensor, y_real: Tensor) -> dict[str, float]:
        """``gan/fid``, ``gan/intra_fid`` (pool features) and ``gan/is`` (logits) from one Inception pass over
        ``inception_samples`` generated images and as many real ones at most (a seeded subset of ``real_role``);
        images are mapped back to [0, 1] with the datamodule's mean and std."""
        c = self.config
        n = c.inception_samples or c.samples
        if x_real.shape[0] > n:
            keep = torch.randperm(x_real.shape[0], generator=torch.Generator().manual_seed(c.seed))[:n]
            x_real, y_real = x_real[keep], y_real[keep]
        x_fake, y_fake = _generate(model, n)
        mean = torch.tensor(dm.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(dm.std, dtype=torch.float32).view(1, -1, 1, 1)
        pool_real, _ = feature_outputs(self._inception, (x_real * std + mean).clamp(0, 1))
        pool_fake, logits_fake = feature_outputs(self._inception, (x_fake * std + mean).clamp(0, 1))
        out = {"gan/fid": frechet_distance(pool_real, pool_fake),
               "gan/is": inception_score(logits_fake, splits=min(c.is_splits, n))[0]}
        try:
            out["gan/intra_fid"] = intra_fid(pool_real, y_real, pool_fake, y_fake)
        except ValueError:
            pass  # a class with fewer than two real or generated samples
        return out


def _grid_writer(images: Tensor, num_classes: int):
    """8 samples per class, one row per class (labels were drawn as arange % num_classes)."""

    def write(path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        lo, hi = images.amin(), images.amax()
        pics = ((images - lo) / (hi - lo + 1e-12)).permute(0, 2, 3, 1).numpy()
        fig, axes = plt.subplots(num_classes, 8, figsize=(8, num_classes), squeeze=False)
        for i in range(images.shape[0]):
            ax = axes[i % num_classes][i // num_classes]
            ax.imshow(pics[i].squeeze(-1) if pics.shape[-1] == 1 else pics[i], cmap="gray")
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)

    return write
