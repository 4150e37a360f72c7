"""MemGuard (Jia, Salem, Backes, Zhang & Gong, CCS 2019): a test-time defense that turns each released score vector
into an adversarial example for the defender's own membership classifier (Sec. 4, Alg. 1 and Phase II).

Training is ERM. After fit the defender trains its surrogate membership classifier g (an MLP on the score vector
sorted in descending order, Sec. 4.2) on the samples the model trained on (label 1) against a held-out role it owns
(label 0: ``validation`` by default; never the audited non-members). Each black-box answer (``released_probs``) is

* Phase I (Alg. 1): noise r on the logits z minimizing L = |h(s(z + r))| + c2·ReLU(max_{j≠l}(z + r)_j − (z + r)_l)
  + c3·‖s(z + r) − s(z)‖₁ (h: g's logit, l: the predicted label, s: softmax) by normalized gradient steps until
  the label is kept and h changed sign (g ≈ 0.5), then again with c3 ×10 while that still succeeds (smaller
  noise), keeping the last success; so the noisy vector is a probability vector with the same label;
* Phase II: the noisy vector is released with probability p = min(1, ε / ‖s(z + r) − s(z)‖₁) when it brings g
  closer to 0.5 (else p = 0), the raw softmax otherwise: the expected L1 distortion is at most ε
  (``distortion_budget``).

The coin is a keyed hash of the query's logits and ``seed``: the same query always gets the same answer whatever
the batch (no averaging over repeated queries), and every answer is deterministic given the seed.

The surrogate is not a submodule (``net``'s checkpoint keys are ERM's): it is saved deliberately as the module's
extra state (``_extra_state``) with a digest of the ``net`` weights it was trained for, so ``state_dict`` (the
model bank's cache), ``trainer.save_checkpoint`` and ``MemGuard.load_from_checkpoint`` carry it. A surrogate for
other weights (e.g. a best-validation checkpoint saved before fit ended, or an ERM checkpoint) is never used: it is
retrained at test start, or on the first release, from the datamodule of the attached trainer (deterministic given
``seed``, so ``test --ckpt_path`` re-audits release the same vectors as the fit's own audit).
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_privacy.defenses.base import ClassifierDefense
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.binary import fit_binary
from lightning_privacy.models.predict import predict_logits

HoldoutRole = Literal["validation", "reference"]
HOLDOUT_ROLES = ("validation", "reference")
AT_HALF = 1e-5
"""|g − 0.5| at or below which a score vector is left as it is (the reference implementation's tolerance)."""
CHUNK = 8192
"""Rows per Phase I batch: bounds memory on large audits."""
SMALL_ROWS = 4096
"""Up to this many rows, CPU work runs on one thread (see ``small_work``)."""


@contextmanager
def small_work(device: torch.device, rows: int) -> Iterator[None]:
    """One intra-op thread for small CPU work: Phase I and the surrogate's training are thousands of tiny steps,
    for which thread synchronization costs more than it saves (4x slower with 2 threads on a loaded 2-core
    machine); the setting is restored afterwards."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or rows > SMALL_ROWS or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class MembershipSurrogate(nn.Module):
    """The defender's membership classifier (Jia et al. Sec. 4.2): an MLP on the score vector sorted in descending
    order (so it ignores which class is which); ``forward`` returns the decision logit h, g = sigmoid(h)."""

    def __init__(self, num_classes: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = num_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, probs: Tensor) -> Tensor:
        return self.mlp(probs.sort(dim=-1, descending=True).values).squeeze(-1)


@dataclass
class _Surrogate:
    """A trained surrogate (CPU, frozen) and the digest of the ``net`` weights whose outputs it learned."""

    model: MembershipSurrogate
    weights: str
    train_acc: float


@dataclass(frozen=True)
class Release:
    """MemGuard's answers, one row per query, float64: ``raw`` = softmax(z); ``noisy`` = Phase I's softmax(z + r)
    (= ``raw`` where Phase I found no noise); ``p`` = Phase II's probability of releasing ``noisy``;
    ``perturbed`` = the coin's outcome; ``probs`` = what the client receives."""

    raw: Tensor
    noisy: Tensor
    p: Tensor
    perturbed: Tensor
    probs: Tensor


def keyed_uniform(logits: Tensor, seed: int) -> Tensor:
    """A number in [0, 1) per row: a hash, keyed by ``seed``, of the row's float32 bits (a polynomial hash modulo
    2³¹ − 1 with seeded coefficients, then a 32-bit integer finalizer)."""
    prime = 2**31 - 1
    z = logits.detach().float().contiguous()
    bits = z.view(torch.int32).long() & 0xFFFFFFFF
    keys = torch.randint(1, prime, (z.shape[1] + 2,), generator=torch.Generator().manual_seed(seed)).tolist()
    h = torch.full((z.shape[0],), keys[-1], dtype=torch.long, device=z.device)
    for j in range(z.shape[1]):
        h = (h * keys[-2] + bits[:, j] % prime + keys[j]) % prime
    for _ in range(2):
        h = ((h ^ (h >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return h.double() / 2.0**32


class MemGuard(ClassifierDefense):
    """Jia et al. (CCS 2019) Alg. 1 (Phase I) + Phase II at release time; trains as ERM (see the module docstring).

    ``distortion_budget``: ε, the expected L1 distortion per score vector (0: no defense; the paper sweeps 0..1);
    ``holdout_role``: the defender's non-members for the surrogate; ``c2``, ``c3``: Alg. 1's weights (c3 is the
    first value, ×10 per round, at most ``c3_rounds`` rounds), ``max_iter`` steps of size ``step_size`` per round.
    """

    dp_refusal = ("its surrogate membership classifier is trained on the members' outputs after fit, outside the "
                  "DP-SGD objective, and shapes every released score vector, which the guarantee would not cover")
    key_hparams = ("distortion_budget",)

    def __init__(
        self,
        num_classes: int = 10,
        distortion_budget: float = 1.0,
        holdout_role: HoldoutRole = "validation",
        surrogate_hidden: Sequence[int] = (256, 128, 64),
        surrogate_epochs: int = 400,
        surrogate_lr: float = 1e-3,
        surrogate_batch_size: int = 64,
        surrogate_optimizer: Literal["sgd", "adam"] = "sgd",
        c2: float = 10.0,
        c3: float = 0.1,
        c3_rounds: int = 7,
        max_iter: int = 300,
        step_size: float = 0.1,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """``kwargs``: the architecture and optimizer arguments of ClassifierDefense."""
        if not (math.isfinite(distortion_budget) and 0.0 <= distortion_budget <= 2.0):
            raise UserInputError(f"distortion_budget (ε, the expected L1 distortion of a score vector) must be in "
                                 f"[0, 2] (two probability vectors are at most 2 apart in L1; 0 = no defense); "
                                 f"got {distortion_budget}")
        if holdout_role not in HOLDOUT_ROLES:
            raise UserInputError(f"holdout_role (the defender's non-members for its surrogate membership classifier) "
                                 f"must be one of {list(HOLDOUT_ROLES)}; got {holdout_role!r} (the audited "
                                 "non-members and the attacker's shadow role are not the defender's to use)")
        hidden = list(surrogate_hidden)
        if any(not isinstance(h, int) or h < 1 for h in hidden):
            raise UserInputError(f"surrogate_hidden must list positive layer widths (e.g. [256, 128, 64]); got {hidden}")
        for name, value in (("surrogate_epochs", surrogate_epochs), ("surrogate_batch_size", surrogate_batch_size),
                            ("c3_rounds", c3_rounds), ("max_iter", max_iter)):
            if not isinstance(value, int) or value < 1:
                raise UserInputError(f"{name} must be an integer >= 1; got {value!r}")
        if surrogate_optimizer not in ("sgd", "adam"):
            raise UserInputError(f"surrogate_optimizer must be 'sgd' (the authors' code) or 'adam'; got "
                                 f"{surrogate_optimizer!r}")
        for name, value in (("surrogate_lr", surrogate_lr), ("c3", c3), ("step_size", step_size)):
            if not (math.isfinite(value) and value > 0):
                raise UserInputError(f"{name} must be > 0; got {value}")
        if not (math.isfinite(c2) and c2 >= 0):
            raise UserInputError(f"c2 (the weight of keeping the predicted label) must be >= 0; got {c2}")
        if num_classes < 2:
            raise UserInputError(f"MemGuard needs num_classes >= 2; got {num_classes}")
        super().__init__(num_classes=num_classes, **kwargs)
        self._surrogate: Optional[_Surrogate] = None  # a plain attribute: not a submodule (see get_extra_state)

    # -- the surrogate membership classifier --------------------------------------------------------------------

    def weights_digest(self) -> str:
        """A digest of ``net``'s weights and buffers: which model a surrogate belongs to."""
        digest = hashlib.sha256()
        for name, t in self.net.state_dict().items():
            digest.update(name.encode())
            digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:32]

    @property
    def surrogate_ready(self) -> bool:
        """Whether the surrogate was trained against the current weights."""
        return self._surrogate is not None and self._surrogate.weights == self.weights_digest()

    @property
    def surrogate_train_acc(self) -> float:
        """The surrogate's balanced training accuracy at g = 0.5 (nan before it is trained)."""
        return float("nan") if self._surrogate is None else self._surrogate.train_acc

    def _datamodule(self) -> Any:
        trainer = getattr(self, "_trainer", None)
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        return dm if dm is not None and hasattr(dm, "role_indices") else None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        dm = self._datamodule()
        role = self.hparams.holdout_role
        if dm is None:
            raise UserInputError("MemGuard trains its surrogate membership classifier on the datamodule's roles: "
                                 "fit it with a PrivacyDataModule")
        if dm.role_indices(role).numel() == 0:
            raise UserInputError(f"MemGuard trains its surrogate membership classifier on members vs the {role} role, "
                                 f"which is empty: set data.init_args.{role} (e.g. 0.1) or model.init_args.holdout_role")

    def on_fit_end(self) -> None:
        """The surrogate for the final weights (shadow models of the bank are never tested, and cache this)."""
        super().on_fit_end()
        if self.hparams.distortion_budget > 0:
            self.fit_surrogate()

    def on_test_start(self) -> None:
        """A checkpoint loaded for testing (the best validation one) needs its own surrogate."""
        super().on_test_start()
        if self.hparams.distortion_budget > 0 and not self.surrogate_ready:
            self.fit_surrogate()

    def fit_surrogate(self, datamodule: Any = None) -> float:
        """Train the surrogate on the current weights' softmax outputs: the samples the model trained on (the
        members it trained on, or a bank model's training half) vs ``holdout_role``, an equal number of each (a seeded
        draw), so that g = 0.5 is the balanced decision boundary. Returns its training accuracy."""
        dm = datamodule if datamodule is not None else self._datamodule()
        role = self.hparams.holdout_role
        if dm is None:
            raise RuntimeError("MemGuard.fit_surrogate needs a datamodule with membership roles (pass one, or "
                               "attach the model to a trainer with a PrivacyDataModule)")
        members = dm.training_indices()
        held_out = dm.role_indices(role)
        if held_out.numel() == 0 or members.numel() == 0:
            raise UserInputError(f"MemGuard's surrogate needs members and a non-empty {role} role; got "
                                 f"{members.numel()} and {held_out.numel()}: set data.init_args.{role} (e.g. 0.1)")
        g = torch.Generator().manual_seed(self.hparams.seed)
        n = min(members.numel(), held_out.numel())
        members = members[torch.randperm(members.numel(), generator=g)[:n]]
        held_out = held_out[torch.randperm(held_out.numel(), generator=g)[:n]]
        with torch.inference_mode(False), torch.enable_grad():
            z_in, _ = predict_logits(self, dm.index_dataloader(members))
            z_out, _ = predict_logits(self, dm.index_dataloader(held_out))
            return self.train_surrogate(z_in.double().softmax(1).float(), z_out.double().softmax(1).float())

    def train_surrogate(self, member_probs: Tensor, nonmember_probs: Tensor) -> float:
        """Fit the surrogate (CPU; ``surrogate_optimizer``, by default SGD lr 1e-3 for 400 epochs as the MemGuard
        authors' released code; class-balanced BCE, seeded) on score vectors of members (1) and
        non-members (0), and bind it to the current weights. Returns its training accuracy."""
        hp = self.hparams
        x = torch.cat([member_probs, nonmember_probs]).detach().float().cpu()
        t = torch.cat([torch.ones(len(member_probs)), torch.zeros(len(nonmember_probs))])
        if x.ndim != 2 or x.shape[1] != hp.num_classes or not len(member_probs) or not len(nonmember_probs):
            raise ValueError(f"need (n, {hp.num_classes}) score vectors of both members and non-members; got "
                             f"{tuple(member_probs.shape)} and {tuple(nonmember_probs.shape)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp.seed)
            model = MembershipSurrogate(hp.num_classes, list(hp.surrogate_hidden))
        with torch.inference_mode(False), torch.enable_grad(), small_work(x.device, hp.surrogate_batch_size):
            fit_binary(model, x, t, epochs=hp.surrogate_epochs, lr=hp.surrogate_lr,
                       batch_size=hp.surrogate_batch_size, seed=hp.seed + 1, optimizer=hp.surrogate_optimizer)
        with torch.no_grad():
            hit = ((model(x) > 0).float() == t).float()
            acc = 0.5 * float(hit[t == 1].mean() + hit[t == 0].mean())
        self._surrogate = _Surrogate(model, self.weights_digest(), acc)
        return acc

    def _ready_surrogate(self) -> MembershipSurrogate:
        if not self.surrogate_ready:
            if self._datamodule() is None:
                state = "was trained for other weights" if self._surrogate is not None else "was never trained"
                raise RuntimeError(f"MemGuard's surrogate membership classifier {state}: call "
                                   "model.fit_surrogate(datamodule) or attach a trainer with a PrivacyDataModule")
            self.fit_surrogate()
        assert self._surrogate is not None
        return self._surrogate.model

    def surrogate_scores(self, probs: Tensor) -> Tensor:
        """g(probs): the surrogate's membership probability for score vectors (n, C), float64."""
        model = self._ready_surrogate()
        with torch.no_grad():
            return torch.sigmoid(model.to(probs.device)(probs.float())).double()

    # -- checkpoints: the surrogate travels as extra state, not as a submodule ------------------------------------

    def get_extra_state(self) -> dict:
        s = self._surrogate
        if s is None:
            return {"surrogate": None}
        return {"surrogate": {k: v.detach().cpu() for k, v in s.model.state_dict().items()},
                "weights": s.weights, "train_acc": s.train_acc}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("surrogate") is None:
            self._surrogate = None
            return
        model = MembershipSurrogate(self.hparams.num_classes, list(self.hparams.surrogate_hidden))
        model.load_state_dict(state["surrogate"])
        self._surrogate = _Surrogate(model.requires_grad_(False).eval(), str(state["weights"]),
                                     float(state.get("train_acc", float("nan"))))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of another defense (e.g. ERM) has no surrogate yet: MemGuard applies to it at test time."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict")
        if isinstance(state, dict):
            state.setdefault("_extra_state", {"surrogate": None})

    # -- release: Phase I and Phase II ----------------------------------------------------------------------------

    def released_probs(self, logits: Tensor) -> Tensor:
        """What a black-box client receives (float64): Phase I's noisy vector with Phase II's probability, else the
        raw softmax; ε = 0 releases exactly the base class's softmax."""
        if self.hparams.distortion_budget == 0:
            return super().released_probs(logits)
        return self.guard(logits).probs

    def guard(self, logits: Tensor) -> Release:
        """Phase I and Phase II for each row of ``logits`` (n, C), computed on the model's device."""
        surrogate = self._ready_surrogate()
        hp, out = self.hparams, logits.device
        with torch.inference_mode(False), torch.enable_grad(), small_work(self.device, min(len(logits), CHUNK)):
            z = logits.detach().to(self.device, torch.float32).clone()
            surrogate = surrogate.to(z.device)
            r = torch.cat([self.phase_one(chunk, surrogate) for chunk in z.split(CHUNK)]) if len(z) else torch.zeros_like(z)
            with torch.no_grad():
                raw = z.double().softmax(1)
                noisy = (z.double() + r.double()).softmax(1)
                g_raw = torch.sigmoid(surrogate(raw.float()))
                g_noisy = torch.sigmoid(surrogate(noisy.float()))
                helps = ((g_noisy - 0.5).abs() < (g_raw - 0.5).abs()) & (noisy.argmax(1) == z.argmax(1))
                distortion = (noisy - raw).abs().sum(1)
                p = torch.where(helps, (hp.distortion_budget / distortion.clamp_min(1e-12)).clamp_max(1.0),
                                torch.zeros_like(distortion))
                perturbed = keyed_uniform(z, hp.seed).to(z.device) < p
                probs = torch.where(perturbed[:, None], noisy, raw)
        return Release(raw=raw.to(out), noisy=noisy.to(out), p=p.to(out), perturbed=perturbed.to(out),
                       probs=probs.to(out))

    def phase_one(self, z: Tensor, surrogate: MembershipSurrogate) -> Tensor:
        """Alg. 1 for each row of float32 logits ``z`` (n, C): the noise r of the last successful c3 round (0 where
        the first round fails, or where g(s(z)) is already 0.5)."""
        hp = self.hparams
        label = z.argmax(1)
        s0 = z.softmax(1)
        with torch.no_grad():
            h0 = surrogate(s0)
        best = torch.zeros_like(z)
        searching = (torch.sigmoid(h0) - 0.5).abs() > AT_HALF
        for k in range(hp.c3_rounds):
            rows = searching.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            r, ok = self._search(z[rows], label[rows], s0[rows], h0[rows], surrogate, float(hp.c3) * 10.0**k)
            best[rows[ok]] = r[ok]
            searching[rows[~ok]] = False
        return best

    def _search(self, z: Tensor, label: Tensor, s0: Tensor, h0: Tensor, surrogate: MembershipSurrogate,
                c3: float) -> tuple[Tensor, Tensor]:
        """One round of Alg. 1 at a fixed c3: per row, normalized gradient steps from r = 0 until the label is
        kept and h changed sign, at most ``max_iter``; returns r and which rows succeeded."""
        hp = self.hparams
        r = torch.zeros_like(z)
        ok = torch.zeros(len(z), dtype=torch.bool, device=z.device)
        own = F.one_hot(label, z.shape[1]).bool()
        act = torch.arange(len(z), device=z.device)
        for step in range(hp.max_iter + 1):
            r_a = r[act].requires_grad_(True)
            zr = z[act] + r_a
            s = zr.softmax(1)
            h = surrogate(s)
            with torch.no_grad():  # the stopping test of the previous step's result (none at r = 0)
                done = (zr.argmax(1) == label[act]) & (h * h0[act] <= 0) if step else torch.zeros_like(act, dtype=torch.bool)
            ok[act[done]] = True
            going = ~done
            if step == hp.max_iter or not bool(going.any()):
                break
            keep = F.relu(zr.masked_fill(own[act], float("-inf")).amax(1) - zr.gather(1, label[act, None]).squeeze(1))
            loss = h.abs() + hp.c2 * keep + c3 * (s - s0[act]).abs().sum(1)
            (grad,) = torch.autograd.grad(loss[going].sum(), r_a)
            act, grad, r_a = act[going], grad[going], r_a[going].detach()
            norm = grad.norm(dim=1, keepdim=True)
            r[act] = r_a - hp.step_size * torch.where(norm > 0, grad / norm.clamp_min(1e-30), torch.zeros_like(grad))
        return r, ok
