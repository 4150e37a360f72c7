"""PrivateTraining: DP-SGD on one module of a defense (Abadi et al. 2016, Alg. 1; class-DP paper Alg. 2).

Per step: per-sample (or per-group) gradients clipped to C, summed, N(0, σ²C²) added, divided by the expected
batch (q·n records, or q·K groups); an empty draw is still a step (noise only). The noisy gradient is written into
``.grad`` through one ordinary backward of Σ_p ⟨p, g_p⟩, so Lightning's DDP all-reduce and any torch optimizer work
unchanged; under DDP each rank adds N(0, σ²C²/W) to its own clipped sum, which the all-reduce turns into
N(0, σ²C²) in total. The Lightning wiring is ``privacy/mixin.py``.
"""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from typing import Callable, Optional

import torch
from opacus.validators import ModuleValidator
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightning_privacy.errors import UserInputError
from lightning_privacy.privacy.accounting import (
    PrivacyLedger,
    epochs_within,
    group_noise_for_target,
    noise_for_target,
    theorem1_epsilon,
    validate_budget,
)
from lightning_privacy.privacy.clipping import PerSampleClipper
from lightning_privacy.privacy.config import DPConfig
from lightning_privacy.privacy.sampling import (
    derive_seed,
    group_loader,
    kmeans_centroids,
    kmeans_subclasses,
    nearest_centroid_groups,
    poisson_loader,
    seeded_generator,
)

GROUP_CHUNK = 512
"""Records per forward/backward when a sampled group's mean gradient is accumulated."""


def prepare_for_dp(module: nn.Module, *, replacement: Optional[str]) -> nn.Module:
    """The module with BatchNorm replaced by GroupNorm (``replacement='group_norm'``), or an error naming the
    layers DP-SGD cannot train (per-sample gradients need samples that do not interact)."""
    batchnorms = [name for name, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if batchnorms and replacement is None:
        raise UserInputError(f"DP-SGD cannot train BatchNorm layers ({', '.join(batchnorms)}): their output mixes "
                             "the samples of a batch. Set dp.norm_replacement: group_norm, or remove them")
    if batchnorms:
        module = ModuleValidator.fix(module)
    errors = [e for e in ModuleValidator.validate(module, strict=False)]
    if errors:
        raise UserInputError(f"DP-SGD cannot train this model: {'; '.join(str(e) for e in errors)}")
    return module


class PrivateTraining:
    """The DP-SGD state of one fit: sampling, clipping, noise and the privacy ledger (not an nn.Module).

    An epoch is 1/q steps, or fewer under ``limit_batches`` (``trainer.limit_train_batches``: a count or a
    fraction); ``target_epsilon`` alone calibrates σ for the steps that will run: the epochs' steps, capped by
    ``max_steps`` (``trainer.max_steps``, -1 or None: no cap).
    ``num_groups``: the number of groups K the partition has (class/subclass level), whether or not each has
    members. ``min_epochs``: refused beyond the last epoch a fixed-noise run may take within its target.
    """

    def __init__(self, config: DPConfig, *, module: nn.Module, dataset_size: int, batch_size: int,
                 max_epochs: Optional[int], world_size: int = 1, rank: int = 0,
                 groups: Optional[Tensor] = None, num_groups: Optional[int] = None,
                 limit_batches: Optional[float] = None, max_steps: Optional[int] = None,
                 min_epochs: Optional[int] = None, ledger_state: Optional[dict] = None) -> None:
        self.config, self.module, self.world_size = config, module, world_size
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.group_level = config.level != "record"
        if self.group_level:
            if world_size > 1:
                raise UserInputError("class- and subclass-level DP-SGD run in one process; use devices: 1 "
                                     "(record-level DP-SGD supports DDP)")
            assert groups is not None
            self.groups = groups
            self.num_groups = num_groups if num_groups is not None else (
                int(groups.max()) + 1 if groups.numel() else 0)
            self.sample_rate = config.group_sample_rate
            natural = max(1, round(1.0 / self.sample_rate))
            self.expected_batch = self.sample_rate * self.num_groups
            units = self.num_groups
        else:
            self.sample_rate = batch_size / dataset_size if dataset_size else 2.0
            if not 0.0 < self.sample_rate <= 1.0:
                raise UserInputError(f"the DP sample rate batch_size / members = {batch_size} / {dataset_size} "
                                     "is not in (0, 1]: lower data.batch_size")
            natural = int(1.0 / self.sample_rate)
            self.expected_batch = self.sample_rate * dataset_size
            units = dataset_size
        if limit_batches is None or (isinstance(limit_batches, float) and limit_batches >= 1.0):
            self.steps_per_epoch = natural
        elif isinstance(limit_batches, float):
            self.steps_per_epoch = max(1, int(natural * limit_batches))
        else:
            self.steps_per_epoch = max(1, min(natural, int(limit_batches)))
        validate_budget(epsilon=config.target_epsilon, delta=config.delta, sample_rate=self.sample_rate,
                        dataset_size=units)
        self.max_epochs = max_epochs if max_epochs is not None and max_epochs > 0 else None
        planned = self.max_epochs * self.steps_per_epoch if self.max_epochs is not None else None
        if max_steps is not None and max_steps > 0:
            planned = max_steps if planned is None else min(planned, max_steps)
        self.planned_steps = planned
        self.ledger = PrivacyLedger(accountant=config.accountant, level="group" if self.group_level else "record")
        self.steps = 0
        self.nonfinite = 0
        if ledger_state is not None:
            self.load_state_dict(ledger_state)
        self.noise_multiplier = self._noise()
        if ledger_state is not None and abs(float(ledger_state["noise_multiplier"]) - self.noise_multiplier) > 1e-9:
            warnings.warn(f"continuing with noise multiplier {self.noise_multiplier}, the saved ledger trained with "
                          f"{ledger_state['noise_multiplier']}: ε keeps both parts of the history", stacklevel=2)
        self.allowed_epochs = self._allowed_epochs()
        if self.allowed_epochs is not None and min_epochs and min_epochs > self.allowed_epochs:
            raise UserInputError(f"trainer.min_epochs = {min_epochs} goes past epoch {self.allowed_epochs}, the last "
                                 f"within dp.target_epsilon {config.target_epsilon} at noise {self.noise_multiplier}: "
                                 "lower min_epochs, raise the noise or the target")
        self.clipper = None if self.group_level else PerSampleClipper(
            module, max_grad_norm=config.max_grad_norm, strategy=config.clipping)
        self._seed = config.seed
        self._rank = rank
        self._generator: Optional[torch.Generator] = None
        self.last_clip_fraction = float("nan")

    # ---- budget --------------------------------------------------------------------------------------
    def _noise(self) -> float:
        c = self.config
        if c.noise_multiplier is not None:
            return c.noise_multiplier
        if not self.planned_steps:
            raise UserInputError("dp.target_epsilon without dp.noise_multiplier solves the noise for the planned "
                                 "steps: set trainer.max_epochs or trainer.max_steps (or give dp.noise_multiplier "
                                 "to stop at the target)")
        if self.group_level:
            return group_noise_for_target(target_epsilon=c.target_epsilon, delta=c.delta,
                                          sample_rate=self.sample_rate, steps=self.planned_steps)
        return noise_for_target(target_epsilon=c.target_epsilon, delta=c.delta, sample_rate=self.sample_rate,
                                steps=self.planned_steps, accountant=c.accountant)

    def _epsilon_after(self, extra_steps: int) -> float:
        """ε of the ledger so far plus ``extra_steps`` more steps at this fit's σ and q."""
        ledger = PrivacyLedger(accountant=self.config.accountant, level=self.ledger.level)
        ledger.load_state_dict(self.ledger.state_dict())
        if extra_steps:
            ledger.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate, steps=extra_steps)
        return ledger.epsilon(self.config.delta)

    def _allowed_epochs(self) -> Optional[int]:
        """Fixed noise with a target: the most epochs this fit may run with the ledger's ε within the target."""
        c = self.config
        if c.mode != "stop_at_target":
            return None
        cap = self.max_epochs or 10_000
        if self.ledger.steps:
            fitting, too_many = 0, cap + 1
            if self._epsilon_after(cap * self.steps_per_epoch) <= c.target_epsilon:
                return cap
            while too_many - fitting > 1:
                mid = (fitting + too_many) // 2
                ok = self._epsilon_after(mid * self.steps_per_epoch) <= c.target_epsilon
                fitting, too_many = (mid, too_many) if ok else (fitting, mid)
            epochs = fitting
        else:
            epochs = epochs_within(target_epsilon=c.target_epsilon, noise_multiplier=self.noise_multiplier,
                                   sample_rate=self.sample_rate, steps_per_epoch=self.steps_per_epoch,
                                   delta=c.delta, accountant=c.accountant, max_epochs=cap,
                                   level="group" if self.group_level else "record")
        if epochs < 1:
            raise UserInputError(f"dp.noise_multiplier {self.noise_multiplier} spends more than target_epsilon "
                                 f"{c.target_epsilon} in a single epoch (with the {self.ledger.steps} steps these "
                                 "weights already took): raise the noise or the target")
        return epochs

    def should_stop(self, epochs_done: int) -> bool:
        """Fixed noise with a target: stop once another epoch would exceed it. ``epochs_done``: the epochs this fit
        ran beyond the ledger it started from (a resumed fit's saved epochs are in the ledger already)."""
        return self.allowed_epochs is not None and epochs_done >= self.allowed_epochs

    def epsilon(self) -> float:
        return self.ledger.epsilon(self.config.delta)

    def target_exceeded(self) -> bool:
        """The final ε is above a target the user set (e.g. a re-fit that continued the ledger)."""
        target = self.config.target_epsilon
        return target is not None and self.epsilon() > target * (1 + 1e-9)

    def metrics(self) -> dict[str, float]:
        """What a run logs every epoch: ``dp/epsilon`` (the configured level's guarantee), δ, σ, q, steps, the
        non-finite samples dropped; for class/subclass-DP the σ/2 RDP bound (``_rdp``) and Theorem 1's closed
        form with its validity flag; ``dp/clipped_fraction`` only with ``dp.log_member_metrics``. An accountant
        that cannot give a finite ε (Opacus' PRV at large ε) is left out, not logged as inf."""
        c = self.config
        out = {"dp/epsilon": self.epsilon(), "dp/delta": c.delta, "dp/noise_multiplier": self.noise_multiplier,
               "dp/sample_rate": self.sample_rate, "dp/steps": float(self.steps),
               "dp/nonfinite_samples": float(self.nonfinite)}
        if c.log_member_metrics and not math.isnan(self.last_clip_fraction):
            out["dp/clipped_fraction"] = self.last_clip_fraction
        if self.group_level:
            level = c.level
            out[f"dp/{level}_epsilon"] = out["dp/epsilon"]  # the exact replace-one-group account
            out[f"dp/{level}_epsilon_rdp"] = self.ledger.epsilon(c.delta, accountant="rdp")  # the σ/2 bound
            if self.ledger.steps:
                bound, valid = theorem1_epsilon(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                                                steps=self.ledger.steps, delta=c.delta)
                out[f"dp/{level}_epsilon_thm1"], out[f"dp/{level}_thm1_valid"] = bound, float(valid)
            out[f"dp/{level}_groups"] = float(self.num_groups)
        else:
            for name in c.report_accountants:
                if name != c.accountant:
                    try:
                        out[f"dp/epsilon_{name}"] = self.ledger.epsilon(c.delta, accountant=name)
                    except (ValueError, UserInputError):  # gdp cannot account a history whose σ or q changed
                        pass
        return {k: v for k, v in out.items() if math.isfinite(v)}

    # ---- sampling ------------------------------------------------------------------------------------
    def training_loader(self, loader: DataLoader) -> DataLoader:
        generator = seeded_generator(self._seed, rank=self._rank, stream=1)
        if self.group_level:
            return group_loader(loader, self.groups, sample_rate=self.sample_rate, generator=generator,
                                num_groups=self.num_groups, steps=self.steps_per_epoch)
        return poisson_loader(loader, sample_rate=self.sample_rate, steps=self.steps_per_epoch, generator=generator,
                              world_size=self.world_size, rank=self._rank)

    # ---- the step ------------------------------------------------------------------------------------
    def recording(self):
        """Context for the training forward whose per-sample losses ``backward`` will clip."""
        return self.clipper.recording() if self.clipper is not None else nullcontext()

    def consistency_probe(self, model: nn.Module, per_sample: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                          y: Tensor, *, samples: int = 3) -> None:
        """Per-sample clipping assumes sample i's loss depends on sample i alone. Check it once: in eval mode and
        full precision, the batch's per-sample losses and clipped-route gradient norms of the first ``samples``
        records must equal single-record passes; a batch-mixing layer (other than BatchNorm, already refused) or a
        reused parameter makes them differ."""
        m = min(samples, x.shape[0])
        if self.clipper is None or m < 2:
            return
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad(), torch.autocast(device_type=x.device.type, enabled=False):
                with self.clipper.recording():
                    batch = per_sample(x[:m], y[:m])
                result = self.clipper.clip_and_sum(batch, max_grad_norm=math.inf)
                for i in range(m):
                    single = per_sample(x[i:i + 1], y[i:i + 1])
                    grads = torch.autograd.grad(single.sum(), self.params, allow_unused=True)
                    norm = torch.sqrt(sum(g.double().pow(2).sum() for g in grads if g is not None))
                    same_loss = torch.allclose(single.detach().double().reshape(()), batch[i].detach().double(),
                                               rtol=1e-3, atol=1e-5)
                    same_norm = math.isclose(float(norm), float(result.norms[i]), rel_tol=1e-2, abs_tol=1e-6)
                    if not (same_loss and same_norm):
                        raise UserInputError(
                            f"DP-SGD's per-sample gradients are wrong for this network: record {i}'s loss "
                            f"{float(batch[i]):.6g} / gradient norm {float(result.norms[i]):.6g} in a batch vs "
                            f"{float(single.reshape(())):.6g} / {float(norm):.6g} alone. A layer mixes the samples "
                            "of a batch (e.g. h - h.mean(0)), which DP-SGD does not support: make every "
                            "operation per-sample (dp.consistency_check: false skips this check)")
        finally:
            model.train(was_training)

    def _noise_like(self, t: Tensor, std: float) -> Tensor:
        if self._generator is None or self._generator.device != t.device:
            self._generator = torch.Generator(device=t.device)
            self._generator.manual_seed(derive_seed(self._seed, rank=self._rank, stream=0))
        return torch.randn(t.shape, generator=self._generator, device=t.device, dtype=t.dtype) * std

    def _release(self, clipped: list[Tensor], penalty: Optional[Tensor], loss_scale: float = 1.0) -> None:
        """Noise, scale, add the data-independent ``penalty``'s gradient, and write the result into ``.grad``
        (one backward: DDP hooks fire once). ``loss_scale``: a gradient scaler's factor s (fp16 mixed
        precision): the released gradient is multiplied by s, as autograd's of the scaled loss would be, and the
        scaler's unscale divides it back (clipping itself runs on the unscaled float32 loss)."""
        c = self.config
        std = self.noise_multiplier * c.max_grad_norm / math.sqrt(self.world_size)
        scale = self.world_size / self.expected_batch * loss_scale
        grads = [(g + self._noise_like(g, std)) * scale for g in clipped]
        if penalty is not None:
            for g, extra in zip(grads, torch.autograd.grad(penalty, self.params, allow_unused=True)):
                if extra is not None:
                    g.add_(extra, alpha=loss_scale)
        surrogate = sum((p * g.detach()).sum() for p, g in zip(self.params, grads))
        surrogate.backward()
        self.ledger.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps += 1

    def backward_records(self, per_sample_loss: Tensor, *, penalty: Optional[Tensor] = None,
                         loss_scale: float = 1.0) -> None:
        """Clip, sum, noise and release the per-sample losses' gradients (``loss_scale``: see ``_release``)."""
        if per_sample_loss.dtype in (torch.float16, torch.bfloat16):
            per_sample_loss = per_sample_loss.float()
        result = self.clipper.clip_and_sum(per_sample_loss)
        self.nonfinite += result.nonfinite
        if result.factors.numel():
            self.last_clip_fraction = float((result.factors < 1).float().mean())
        self._release(result.grads, penalty, loss_scale)

    def backward_groups(self, x: Tensor, y: Tensor, groups: Tensor, group_loss: Callable[[Tensor, Tensor], Tensor],
                        *, penalty: Optional[Tensor] = None, loss_scale: float = 1.0) -> None:
        """Alg. 2 lines 4-8: per sampled group, the mean gradient of ``group_loss`` (per-sample losses) over its
        records, clipped to S; their sum goes to ``_release``. A group whose gradient is not finite contributes
        nothing and is counted in ``nonfinite``."""
        total = [torch.zeros_like(p) for p in self.params]
        clipped = 0
        unique = groups.unique()
        for g in unique.tolist():
            rows = (groups == g).nonzero().flatten()
            grad = [torch.zeros_like(p) for p in self.params]
            for chunk in rows.split(GROUP_CHUNK):
                loss = group_loss(x[chunk], y[chunk]).sum() / rows.numel()
                parts = torch.autograd.grad(loss, self.params, allow_unused=True)
                for acc, part in zip(grad, parts):
                    if part is not None:
                        acc.add_(part)
            norm = float(torch.sqrt(sum(a.double().pow(2).sum() for a in grad)))
            if not math.isfinite(norm):
                self.nonfinite += 1
                continue
            factor = min(1.0, self.config.max_grad_norm / (norm + 1e-12))
            clipped += factor < 1.0
            for acc, part in zip(total, grad):
                acc.add_(part, alpha=factor)
        if unique.numel():
            self.last_clip_fraction = clipped / unique.numel()
        self._release(total, penalty, loss_scale)

    def close(self) -> None:
        if self.clipper is not None:
            self.clipper.close()

    # ---- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"ledger": self.ledger.state_dict(), "steps": self.steps, "noise_multiplier": self.noise_multiplier,
                "nonfinite": self.nonfinite}

    def load_state_dict(self, state: dict) -> None:
        self.ledger.load_state_dict(state["ledger"])
        self.steps = int(state["steps"])
        self.nonfinite = int(state.get("nonfinite", 0))


def subclass_groups(loader: DataLoader, *, level: str, per_class: int, seed: int,
                    reference: Optional[Dataset] = None, num_classes: Optional[int] = None) -> tuple[Tensor, int]:
    """Group id of every record of the training loader's dataset and the number of groups K: its class; or its
    subclass — the nearest of ``per_class`` k-means centroids per class fitted on ``reference`` (a role the
    account does not protect), or, with ``reference=None``, k-means on the members themselves (the paper)."""
    xs, labels = _features(loader.dataset)
    if level == "class":
        k = max(int(labels.max()) + 1 if labels.numel() else 0, num_classes or 0)
        return labels, k
    if reference is None:
        ids = kmeans_subclasses(xs, labels, per_class=per_class, seed=seed)
        return ids, int(ids.max()) + 1
    ref_x, ref_y = _features(reference)
    classes = max(num_classes or 0, int(labels.max()) + 1, int(ref_y.max()) + 1 if ref_y.numel() else 0)
    centroids = kmeans_centroids(ref_x, ref_y, per_class=per_class, seed=seed, num_classes=classes)
    return nearest_centroid_groups(xs, labels, centroids)


def _features(dataset: Dataset) -> tuple[Tensor, Tensor]:
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=1024):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys).long()
