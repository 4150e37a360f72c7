"""PrivateTraining: DP-SGD on one module of a defense (Abadi et al. 2016, Alg. 1; class-DP paper Alg. 2).

Per step: per-sample (or per-group) gradients clipped to C, summed, N(0, σ²C²) added, divided by the expected
batch (q·n records, or q·K groups). The noisy gradient is written into ``.grad`` through one ordinary backward
of Σ_p ⟨p, g_p⟩, so Lightning's DDP all-reduce and any torch optimizer work unchanged; under DDP each rank
adds N(0, σ²C²/W) to its own clipped sum, which the all-reduce turns into N(0, σ²C²) in total.
"""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from typing import Callable, Optional

import torch
from opacus.validators import ModuleValidator
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_privacy.errors import UserInputError
from lightning_privacy.privacy.accounting import (
    PrivacyLedger,
    epochs_within,
    noise_for_target,
    theorem1_epsilon,
    validate_budget,
)
from lightning_privacy.privacy.clipping import PerSampleClipper
from lightning_privacy.privacy.config import DPConfig
from lightning_privacy.privacy.sampling import group_loader, kmeans_subclasses, poisson_loader

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
    """The DP-SGD state of one fit: sampling, clipping, noise and the privacy ledger (not an nn.Module)."""

    def __init__(self, config: DPConfig, *, module: nn.Module, dataset_size: int, batch_size: int,
                 max_epochs: Optional[int], world_size: int = 1, rank: int = 0,
                 groups: Optional[Tensor] = None) -> None:
        self.config, self.module, self.world_size = config, module, world_size
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.group_level = config.level != "record"
        if self.group_level:
            if world_size > 1:
                raise UserInputError("class- and subclass-level DP-SGD run in one process; use devices: 1 "
                                     "(record-level DP-SGD supports DDP)")
            assert groups is not None
            self.groups = groups
            self.num_groups = int(groups.max()) + 1 if groups.numel() else 0
            self.sample_rate = config.group_sample_rate
            self.steps_per_epoch = max(1, round(1.0 / self.sample_rate))
            self.expected_batch = self.sample_rate * self.num_groups
            units = self.num_groups
        else:
            self.sample_rate = batch_size / dataset_size if dataset_size else 2.0
            if not 0.0 < self.sample_rate <= 1.0:
                raise UserInputError(f"the DP sample rate batch_size / members = {batch_size} / {dataset_size} "
                                     "is not in (0, 1]: lower data.batch_size")
            self.steps_per_epoch = int(1.0 / self.sample_rate)
            self.expected_batch = self.sample_rate * dataset_size
            units = dataset_size
        validate_budget(epsilon=config.target_epsilon, delta=config.delta, sample_rate=self.sample_rate,
                        dataset_size=units)
        # Group-level: the replace-one-group sensitivity is 2S, i.e. the record-level account at σ/2.
        self.account_scale = 0.5 if self.group_level else 1.0
        self.max_epochs = max_epochs if max_epochs is not None and max_epochs > 0 else None
        self.noise_multiplier = self._noise()
        self.allowed_epochs = self._allowed_epochs()
        self.ledger = PrivacyLedger(accountant=config.accountant)
        self.steps = 0
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
        if self.max_epochs is None:
            raise UserInputError("dp.target_epsilon without dp.noise_multiplier solves the noise for the planned "
                                 "epochs: set trainer.max_epochs (or give dp.noise_multiplier to stop at the target)")
        sigma = noise_for_target(target_epsilon=c.target_epsilon, delta=c.delta, sample_rate=self.sample_rate,
                                 steps=self.max_epochs * self.steps_per_epoch, accountant=c.accountant)
        return sigma / self.account_scale

    def _allowed_epochs(self) -> Optional[int]:
        c = self.config
        if c.mode != "stop_at_target":
            return None
        cap = self.max_epochs or 10_000
        epochs = epochs_within(target_epsilon=c.target_epsilon, noise_multiplier=self.noise_multiplier * self.account_scale,
                               sample_rate=self.sample_rate, steps_per_epoch=self.steps_per_epoch, delta=c.delta,
                               accountant=c.accountant, max_epochs=cap)
        if epochs < 1:
            raise UserInputError(f"dp.noise_multiplier {self.noise_multiplier} spends more than target_epsilon "
                                 f"{c.target_epsilon} in a single epoch: raise the noise or the target")
        return epochs

    def should_stop(self, epochs_done: int) -> bool:
        """Fixed noise with a target: stop once another epoch would exceed it."""
        return self.allowed_epochs is not None and epochs_done >= self.allowed_epochs

    def epsilon(self) -> float:
        return self.ledger.epsilon(self.config.delta)

    def metrics(self) -> dict[str, float]:
        """What a run logs every epoch: ``dp/epsilon`` (the configured level's guarantee), δ, σ, q, steps, and
        for class/subclass-DP the tight RDP account and Theorem 1's closed form with its validity flag."""
        c = self.config
        out = {"dp/epsilon": self.epsilon(), "dp/delta": c.delta, "dp/noise_multiplier": self.noise_multiplier,
               "dp/sample_rate": self.sample_rate, "dp/steps": float(self.steps)}
        if not math.isnan(self.last_clip_fraction):
            out["dp/clipped_fraction"] = self.last_clip_fraction
        if self.group_level:
            level = c.level
            out[f"dp/{level}_epsilon"] = out["dp/epsilon"]  # the ledger accounts groups at σ/2 (sensitivity 2S)
            if self.steps:
                bound, valid = theorem1_epsilon(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                                                steps=self.steps, delta=c.delta)
                out[f"dp/{level}_epsilon_thm1"], out[f"dp/{level}_thm1_valid"] = bound, float(valid)
            out[f"dp/{level}_groups"] = float(self.num_groups)
        else:
            for name in c.report_accountants:
                if name != c.accountant:
                    try:
                        out[f"dp/epsilon_{name}"] = self.ledger.epsilon(c.delta, accountant=name)
                    except ValueError:  # gdp cannot account a history whose σ or q changed
                        out[f"dp/epsilon_{name}"] = float("nan")
        return out

    # ---- sampling ------------------------------------------------------------------------------------
    def training_loader(self, loader: DataLoader) -> DataLoader:
        if self.group_level:
            return group_loader(loader, self.groups, sample_rate=self.sample_rate)
        return poisson_loader(loader, sample_rate=self.sample_rate, distributed=self.world_size > 1)

    # ---- the step ------------------------------------------------------------------------------------
    def recording(self):
        """Context for the training forward whose per-sample losses ``backward`` will clip."""
        return self.clipper.recording() if self.clipper is not None else nullcontext()

    def _noise_like(self, t: Tensor, std: float) -> Tensor:
        if self._generator is None or self._generator.device != t.device:
            self._generator = torch.Generator(device=t.device)
            if self._seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self._seed * 1_000_003 + self._rank)
        return torch.randn(t.shape, generator=self._generator, device=t.device, dtype=t.dtype) * std

    def _release(self, clipped: list[Tensor], penalty: Optional[Tensor]) -> None:
        """Noise, scale, add the data-independent ``penalty``'s gradient, and write the result into ``.grad``
        (one backward: DDP hooks fire once)."""
        c = self.config
        std = self.noise_multiplier * c.max_grad_norm / math.sqrt(self.world_size)
        scale = self.world_size / self.expected_batch
        grads = [(g + self._noise_like(g, std)) * scale for g in clipped]
        if penalty is not None:
            for g, extra in zip(grads, torch.autograd.grad(penalty, self.params, allow_unused=True)):
                if extra is not None:
                    g.add_(extra)
        surrogate = sum((p * g.detach()).sum() for p, g in zip(self.params, grads))
        surrogate.backward()
        self.ledger.step(noise_multiplier=self.noise_multiplier * self.account_scale, sample_rate=self.sample_rate)
        self.steps += 1

    def backward_records(self, per_sample_loss: Tensor, *, penalty: Optional[Tensor] = None) -> None:
        result = self.clipper.clip_and_sum(per_sample_loss)
        if result.factors.numel():
            self.last_clip_fraction = float((result.factors < 1).float().mean())
        self._release(result.grads, penalty)

    def backward_groups(self, x: Tensor, y: Tensor, groups: Tensor, group_loss: Callable[[Tensor, Tensor], Tensor],
                        *, penalty: Optional[Tensor] = None) -> None:
        """Alg. 2 lines 4-8: per sampled group, the mean gradient of ``group_loss`` (per-sample losses) over its
        records, clipped to S; their sum goes to ``_release``."""
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
            norm = torch.sqrt(sum(a.pow(2).sum() for a in grad))
            factor = min(1.0, self.config.max_grad_norm / (float(norm) + 1e-12))
            clipped += factor < 1.0
            for acc, part in zip(total, grad):
                acc.add_(part, alpha=factor)
        if unique.numel():
            self.last_clip_fraction = clipped / unique.numel()
        self._release(total, penalty)

    def close(self) -> None:
        if self.clipper is not None:
            self.clipper.close()

    # ---- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"ledger": self.ledger.state_dict(), "steps": self.steps, "noise_multiplier": self.noise_multiplier}

    def load_state_dict(self, state: dict) -> None:
        self.ledger.load_state_dict(state["ledger"])
        self.steps = int(state["steps"])
        if abs(float(state["noise_multiplier"]) - self.noise_multiplier) > 1e-9:
            warnings.warn(f"resuming with noise multiplier {self.noise_multiplier}, the checkpoint trained with "
                          f"{state['noise_multiplier']}: ε keeps both parts of the history", stacklevel=2)


def subclass_groups(loader: DataLoader, *, level: str, per_class: int, seed: int) -> Tensor:
    """Group id of every record of the training loader's dataset: its class, or its k-means subclass."""
    xs, ys = [], []
    for x, y in DataLoader(loader.dataset, batch_size=1024):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    labels = torch.cat(ys).long()
    if level == "class":
        return labels
    return kmeans_subclasses(torch.cat(xs), labels, per_class=per_class, seed=seed)

