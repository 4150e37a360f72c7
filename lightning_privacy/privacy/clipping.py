"""Exact per-sample gradient clipping for DP-SGD in one backward pass ("book-keeping" / mixed ghost clipping).

DP-SGD needs ``sum_i min(1, C / ||g_i||) g_i`` where ``g_i`` is the gradient of sample ``i``'s loss with respect
to all trainable parameters. :class:`PerSampleClipper` computes it exactly, following

- Bu, Wang, Zha, Karypis, "Differentially Private Optimization on Large Model at Small Cost", ICML 2023
  (book-keeping: one backward pass, the clipped sum from stored activations and output gradients), and
  Bu, Mao, Xu, "Scalable and Efficient Training of Large Convolutional Neural Networks with Differential
  Privacy", NeurIPS 2022 (mixed ghost clipping: choose per layer between the ghost norm and materializing
  per-sample gradients);
- Li, Tramèr, Liang, Hashimoto, "Large Language Models Can Be Strong Differentially Private Learners",
  ICLR 2022 (the ghost norm identity ``||B_i^T A_i||_F^2 = <A_i A_i^T, B_i B_i^T>``).

How a step works: forward passes inside :meth:`PerSampleClipper.recording` store, for every trainable layer,
its (detached) inputs ``A`` and the autograd edge of its output. :meth:`PerSampleClipper.clip_and_sum` asks
autograd once for the gradients ``B`` of ``sum_i loss_i`` with respect to those outputs only (never for the
parameter gradients), computes each sample's squared gradient norm layer by layer, the clip factors, and
then each layer's clipped sum ``sum_i c_i g_i``:

- Linear (any number of extra sequence dims) and Conv1d/Conv2d (stride, padding incl. strings and padding
  modes, dilation, groups) are handled natively. With ``T`` the number of positions a weight is applied at
  (sequence length / output pixels), ``p`` the output and ``d`` the input width of one group: both routes pay
  the ``T p d`` multiply-adds per sample of the clipped sum; the ghost norm adds ``T^2 (p + d)`` multiply-adds,
  materializing adds memory-bound passes over the ``p d`` per-sample gradient. ``"mixed"`` takes the ghost norm
  when ``T^2 (p + d) < 16 p d`` (calibrated on CPU; Linear without sequence dims always, convolutions on small
  maps with many channels), else materializes. A ghost layer's clipped sum is one matmul ``(c * B)^T A``
  (convs: the convolution weight gradient of ``c * B``, the kernel a plain backward runs); a materialized
  layer's is ``c^T G``.
- Every other trainable layer type that Opacus supports (GroupNorm, LayerNorm, InstanceNorm, RMSNorm,
  Embedding, Conv3d, ...) is materialized with Opacus' own registered grad sampler.

Materialization runs in chunks of samples so that per-sample gradients stay small and cache-resident (memory
is bounded whatever the batch size); the clip factors of a chunk are known once all its layers are done, so
every per-sample gradient is computed once and folded into the sum while still in cache. Scratch buffers are
reused across steps. ``clipper.plan`` tells how the last step handled each layer.
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge
from torch.nn.modules.batchnorm import _BatchNorm

from lightning_privacy.errors import UserInputError

Strategy = Literal["mixed", "ghost", "materialize"]

_NATIVE = (nn.Linear, nn.Conv1d, nn.Conv2d)

# Per-sample intermediates (materialized gradients, unfolded inputs, Gram matrices) of one chunk of samples are
# kept under this many elements: on CPU small enough to stay in cache, on GPU large enough to fill the device.
_CHUNK_ELEMS = {"cpu": 1 << 21}
_CHUNK_ELEMS_DEFAULT = 1 << 26
# Devices whose scratch buffers are kept across steps (see _Workspace).
_REUSE_DEVICES = {"cpu"}


@dataclass
class ClippedSum:
    """The result of :meth:`PerSampleClipper.clip_and_sum`."""

    grads: list[Tensor]
    """Aligned with ``clipper.params``: ``sum_i min(1, C / ||g_i||) g_i``."""
    norms: Tensor
    """``(n,)`` per-sample total gradient norms before clipping."""
    factors: Tensor
    """``(n,)`` the clip factors ``min(1, C / ||g_i||)``; 0 for a sample whose gradient norm is not finite."""
    nonfinite: int = 0
    """Samples whose per-sample gradient (or its norm) was not finite: they contribute nothing to ``grads``."""


def _opacus_grad_samplers() -> dict[type, Callable]:
    from opacus.grad_sample import GradSampleModule  # imported late: opacus takes ~1 s to import

    return GradSampleModule.GRAD_SAMPLERS


@dataclass(eq=False)
class _Layer:
    name: str
    module: nn.Module
    kind: Literal["linear", "conv", "opacus"]
    slots: list[tuple[nn.Parameter, int]]  # the layer's trainable parameters and their index in clipper.params

    def index(self, param: Tensor | None) -> int | None:
        for p, i in self.slots:
            if p is param:
                return i
        return None


@dataclass(eq=False)
class _Record:
    inputs: tuple[Tensor, ...]
    versions: tuple[int, ...]
    edge: GradientEdge
    shape: torch.Size  # the output's shape (the edge may be that of its base, a same-size tensor)
    check: tuple[weakref.ref, object] | None  # (output, its grad_fn) where an in-place op would cut the edge off


def _output_edge(output: Tensor) -> tuple[GradientEdge, tuple[weakref.ref, object] | None]:
    """The autograd edge whose gradient is d loss / d output, robust to later in-place ops on ``output``.

    An in-place op on a non-view tensor keeps its original node in the graph (the new node feeds it). On a view
    (Linear over sequences returns one) it rewires the graph through the view's base, cutting the view's node
    off; the base's node stays, so a view spanning its whole base is tracked through the base.
    """
    base = output._base
    if base is None:
        return get_gradient_edge(output), None
    if (base.grad_fn is not None and base.numel() == output.numel() and base.is_contiguous()
            and output.is_contiguous() and base.storage_offset() == output.storage_offset()):
        return get_gradient_edge(base), None
    return get_gradient_edge(output), (weakref.ref(output), output.grad_fn)


def _inert_hook(*_: object) -> None:
    """What a pickled or deep-copied module carries in place of a live recording hook."""


def _make_inert_hook() -> Callable[..., None]:
    return _inert_hook


class _RecordingHook:
    """Forward hook of one layer. It holds the clipper weakly: the module never keeps the clipper alive and a
    pickled or deep-copied module gets an inert hook instead (the copy is not the layer being recorded)."""

    __slots__ = ("clipper", "name")

    def __init__(self, clipper: "PerSampleClipper", name: str) -> None:
        self.clipper = weakref.ref(clipper)
        self.name = name

    def __call__(self, module: nn.Module, args: tuple, output: object) -> None:
        clipper = self.clipper()
        if clipper is not None and clipper._active:
            clipper._record(self.name, module, args, output)

    def __reduce__(self) -> tuple:
        return (_make_inert_hook, ())


def _remove_handles(handles: list) -> None:
    for h in handles:
        h.remove()
    handles.clear()


class PerSampleClipper:
    """Exact per-sample gradient clipping of ``module``'s trainable parameters in one backward pass.

    Usage, one DP-SGD step::

        clipper = PerSampleClipper(model, max_grad_norm=1.0)
        with clipper.recording():
            per_sample_loss = F.cross_entropy(model(x), y, reduction="none")
        out = clipper.clip_and_sum(per_sample_loss)
        for p, g in zip(clipper.params, out.grads):
            p.grad = (g + sigma * C * torch.randn_like(g)) / expected_batch_size

    ``strategy``: ``"mixed"`` picks, per layer, the cheaper of the ghost norm and materialized per-sample
    gradients (see the module docstring); ``"ghost"`` / ``"materialize"`` force one for Linear and Conv layers.
    Raises :class:`~lightning_privacy.errors.UserInputError` for models it cannot clip exactly (BatchNorm,
    trainable layers without a per-sample gradient rule, parameters shared between layers).
    """

    def __init__(self, module: nn.Module, *, max_grad_norm: float, strategy: Strategy = "mixed") -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module; got {type(module).__name__}")
        if not (max_grad_norm > 0 and math.isfinite(max_grad_norm)):
            raise UserInputError(f"max_grad_norm must be a positive finite number; got {max_grad_norm}")
        if strategy not in ("mixed", "ghost", "materialize"):
            raise UserInputError(f"strategy must be 'mixed', 'ghost' or 'materialize'; got {strategy!r}")
        self.max_grad_norm = float(max_grad_norm)
        self.strategy: Strategy = strategy
        self.params: list[nn.Parameter] = [p for p in module.parameters() if p.requires_grad]
        """The module's trainable parameters, in ``module.parameters()`` order; ``ClippedSum.grads`` aligns."""
        self._layers = self._find_layers(module)
        self._by_name = {layer.name: layer for layer in self._layers}
        self._records: dict[str, _Record] = {}
        self.plan: dict[str, str] = {}
        """How the last :meth:`clip_and_sum` handled each recorded layer: ``"ghost"``, ``"materialize"`` (native
        per-sample gradients) or ``"opacus"`` (Opacus' grad sampler); unused layers are absent."""
        self._active = False
        self._graph_checked = False
        self._clip_norm = self.max_grad_norm
        self._handles: list = []
        self._ws = _Workspace()
        for layer in self._layers:
            self._handles.append(layer.module.register_forward_hook(_RecordingHook(self, layer.name)))
        self._finalizer = weakref.finalize(self, _remove_handles, self._handles)

    # ------------------------------------------------------------------ set-up

    def _find_layers(self, root: nn.Module) -> list[_Layer]:
        index = {p: i for i, p in enumerate(self.params)}
        owner: dict[nn.Parameter, str] = {}
        layers: list[_Layer] = []
        samplers: dict[type, Callable] | None = None
        for name, mod in root.named_modules():
            qual = name or "<root>"
            if isinstance(mod, _BatchNorm):
                raise UserInputError(
                    f"layer '{qual}' ({type(mod).__name__}) is a batch normalization layer: it mixes the samples "
                    "of a batch, so per-sample gradients (DP-SGD) are undefined. Replace it with GroupNorm, e.g. "
                    "model = opacus.validators.ModuleValidator.fix(model)")
            trainable = [(pname, p) for pname, p in mod.named_parameters(recurse=False) if p.requires_grad]
            if not trainable:
                continue
            for pname, p in trainable:
                if p in owner:
                    raise UserInputError(
                        f"parameter '{qual}.{pname}' is shared with layer '{owner[p]}': per-sample clipping does "
                        "not support tied weights; untie them or freeze one (requires_grad_(False))")
                owner[p] = qual
            if next(mod.children(), None) is not None:
                raise UserInputError(
                    f"module '{qual}' ({type(mod).__name__}) holds trainable parameter(s) "
                    f"{[pname for pname, _ in trainable]} directly and also has submodules: per-sample gradients "
                    "are only defined for leaf layers. Move the parameter into a leaf layer of a supported type "
                    "(nn.Linear, nn.Conv*d, norm layers, ...) or freeze it (requires_grad_(False))")
            native = next((t for t in _NATIVE if isinstance(mod, t) and type(mod).forward is t.forward), None)
            if native is not None:  # (subclasses that keep the forward, e.g. NonDynamicallyQuantizableLinear)
                kind = "linear" if native is nn.Linear else "conv"
            else:
                if samplers is None:
                    samplers = _opacus_grad_samplers()
                if type(mod) not in samplers:
                    raise UserInputError(
                        f"layer '{qual}' ({type(mod).__name__}) has trainable parameters but no per-sample "
                        "gradient rule: supported are nn.Linear, nn.Conv1d, nn.Conv2d and the layers Opacus has "
                        f"grad samplers for ({', '.join(sorted(t.__name__ for t in samplers))}). Replace the "
                        "layer or freeze its parameters (requires_grad_(False))")
                kind = "opacus"
            layers.append(_Layer(qual, mod, kind, [(p, index[p]) for _, p in trainable]))
        return layers

    def close(self) -> None:
        """Remove the forward hooks from the module; the clipper cannot record afterwards."""
        self._finalizer()
        self._records.clear()
        self._ws.clear()
        self._active = False

    def __enter__(self) -> "PerSampleClipper":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ recording

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record each trainable layer's inputs and output during the forward pass(es) run inside.

        Each trainable layer may run once while recording (forward passes under ``torch.no_grad()`` are not
        recorded). Recording starts afresh: records of an earlier, unused recording are dropped.
        """
        if not self._finalizer.alive:
            raise RuntimeError("this PerSampleClipper is closed")
        self._records.clear()
        self._active = True
        try:
            yield
        finally:
            self._active = False

    def _record(self, name: str, module: nn.Module, args: tuple, output: object) -> None:
        layer = self._by_name.get(name)
        if layer is None or layer.module is not module:
            return
        if not torch.is_grad_enabled() or not isinstance(output, Tensor) or not output.requires_grad:
            return
        if name in self._records:
            raise UserInputError(
                f"layer '{name}' ({type(module).__name__}) ran twice while recording: per-sample clipping needs "
                "each trainable layer to run once per forward pass. Use a separate layer for each use (no weight "
                "sharing), freeze it (requires_grad_(False)), or record one forward pass per step")
        inputs = tuple(a.detach() if isinstance(a, Tensor) else a for a in args)
        if not inputs or not isinstance(inputs[0], Tensor):
            raise UserInputError(f"layer '{name}' ({type(module).__name__}) must be called with its input "
                                 "tensor as the first positional argument")
        versions = tuple(a._version if isinstance(a, Tensor) else 0 for a in args)
        edge, check = _output_edge(output)
        self._records[name] = _Record(inputs, versions, edge, output.shape, check)

    # ------------------------------------------------------------------ clipping

    def clip_and_sum(self, per_sample_loss: Tensor, *, max_grad_norm: float | None = None) -> ClippedSum:
        """Backward ``per_sample_loss.sum()`` once; return the clipped per-sample gradients' sum.

        ``per_sample_loss`` has shape ``(n,)``; ``loss_i`` must depend only on sample ``i`` (batch dim first in
        every recorded layer). Consumes the records of the last :meth:`recording`. ``max_grad_norm`` overrides the
        clipper's C for this call (a loss scaled by s with C·s gives s times the clipped sum). A sample whose
        gradient or norm is not finite (a NaN input, a norm beyond the dtype's range) contributes zero, in every
        route alike, and is counted in ``nonfinite``. The first call walks the autograd graph and refuses a
        trainable parameter that reaches the loss other than through its one recorded layer (e.g.
        ``F.linear(h, layer.weight)``): its per-sample gradient would be wrong.
        """
        self._clip_norm = self.max_grad_norm if max_grad_norm is None else float(max_grad_norm)
        if per_sample_loss.dim() != 1:
            raise UserInputError(f"per_sample_loss must have shape (n,); got {tuple(per_sample_loss.shape)}")
        n = per_sample_loss.shape[0]
        records, self._records = self._records, {}
        device = per_sample_loss.device
        if n == 0:
            self.plan = {}
            empty = per_sample_loss.new_zeros(0).detach()
            return ClippedSum([torch.zeros_like(p) for p in self.params], empty, empty.clone())
        if not records:
            raise UserInputError("no forward pass was recorded: run the model's forward inside "
                                 "`with clipper.recording():` (with gradients enabled) before clip_and_sum")
        if not per_sample_loss.requires_grad:
            raise UserInputError("per_sample_loss does not require grad: it must come from the recorded forward")
        recorded = [(self._by_name[name], rec) for name, rec in records.items()]
        if not self._graph_checked:
            self._check_parameter_uses(per_sample_loss, {layer.name for layer, _ in recorded})
            self._graph_checked = True
        for layer, rec in recorded:
            for a, v in zip(rec.inputs, rec.versions):
                if isinstance(a, Tensor) and a._version != v:
                    raise UserInputError(
                        f"the input of layer '{layer.name}' was modified in place after the layer ran; the "
                        "recorded activations are no longer valid. Avoid in-place ops on layer inputs "
                        "(e.g. use nn.ReLU(inplace=False))")
            if rec.check is not None:
                out = rec.check[0]()
                if out is not None and out.grad_fn is not rec.check[1]:
                    raise UserInputError(
                        f"the output of layer '{layer.name}' (a view) was modified in place; its gradient can no "
                        "longer be read. Avoid in-place ops right after this layer (e.g. nn.ReLU(inplace=False))")
        out_grads = torch.autograd.grad(per_sample_loss.sum(), [rec.edge for _, rec in recorded],
                                        allow_unused=True)
        del records
        with torch.no_grad():
            return self._clip(n, recorded, out_grads, device)

    def _check_parameter_uses(self, loss: Tensor, recorded: set[str]) -> None:
        """Refuse a trainable parameter that reaches ``loss`` through more than one autograd edge (used outside its
        layer as well) or whose layer was not recorded (used only functionally)."""
        owner = {p: layer.name for layer in self._layers for p, _ in layer.slots}
        uses: dict[Tensor, int] = {}
        seen: set = set()
        stack = [loss.grad_fn]
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            for nxt, _ in fn.next_functions:
                if nxt is None:
                    continue
                var = getattr(nxt, "variable", None)
                if var is not None:
                    if var in owner:
                        uses[var] = uses.get(var, 0) + 1
                else:
                    stack.append(nxt)
        for p, count in uses.items():
            name = owner[p]
            if count > 1 or name not in recorded:
                how = "more than once (also outside its layer)" if count > 1 else "outside its layer only"
                raise UserInputError(
                    f"a trainable parameter of layer '{name}' reaches the loss {how}, e.g. "
                    "F.linear(h, layer.weight): per-sample clipping sees only the layer's own use, so the clipped "
                    "gradient would be wrong. Call the layer itself, use a separate layer per use, or freeze the "
                    "parameter (requires_grad_(False))")

    def _clip(self, n: int, recorded: list[tuple[_Layer, _Record]], out_grads: Sequence[Tensor | None],
              device: torch.device) -> ClippedSum:
        grads: list[Tensor | None] = [None] * len(self.params)
        chunk_elems = _CHUNK_ELEMS.get(device.type, _CHUNK_ELEMS_DEFAULT)
        works: list[_Work] = []
        for (layer, rec), b in zip(recorded, out_grads):
            if b is None:  # the layer's output does not reach the loss: zero gradient
                continue
            b = b.view(rec.shape) if b.shape != rec.shape else b
            if b.shape[0] != n:
                raise UserInputError(
                    f"layer '{layer.name}': its output has {b.shape[0]} rows but per_sample_loss has {n}; the "
                    "batch dimension must come first in every layer")
            works.append(_make_work(layer, rec.inputs, b, self.strategy, self._ws, chunk_elems))

        self.plan = {w.layer.name: w.route for w in works}
        sq = torch.zeros(n, device=device, dtype=torch.float64 if any(
            w.dtype == torch.float64 for w in works) else torch.float32)
        for w in works:
            w.whole_batch_sq(sq)
        chunked = [w for w in works if w.chunked]
        if chunked:
            per_sample = max(1, sum(w.elems_per_sample for w in chunked))
            m = max(1, min(n, chunk_elems // per_sample))
            m = -(-n // -(-n // m))  # balanced chunks
            factors = torch.empty_like(sq)
            for s in range(0, n, m):
                e = min(n, s + m)
                part = sq[s:e]
                for w in chunked:
                    part = part + w.chunk_sq(s, e)
                sq[s:e] = part
                factors[s:e] = self._factors(part)
                bad = ~torch.isfinite(part)
                for w in chunked:
                    w.chunk_accumulate(factors[s:e], bad if bool(bad.any()) else None)
        else:
            factors = self._factors(sq)
        bad = ~torch.isfinite(sq)
        nonfinite = int(bad.sum())
        if nonfinite:
            for w in works:
                w.drop(bad)
        for w in works:
            w.finish(factors, grads)
        out = [g.to(p.dtype) if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.params)]
        return ClippedSum(out, sq.sqrt(), factors, nonfinite)

    def _factors(self, sq: Tensor) -> Tensor:
        """min(1, C / ||g_i||), and 0 where the squared norm is not finite (NaN or overflow)."""
        factors = (self._clip_norm / sq.sqrt()).clamp_(max=1.0)
        return torch.where(torch.isfinite(sq), factors, torch.zeros_like(factors))


# ---------------------------------------------------------------------- per-layer work


class _Workspace:
    """Scratch buffers kept across steps, keyed by (layer, role). On CPU, large per-step temporaries (unfolded
    inputs, per-sample gradients, Gram matrices, padded inputs) would otherwise come from fresh pages each step,
    and the page faults cost as much as the arithmetic on them (CUDA's caching allocator already avoids that:
    there buffers are allocated per call). Nothing handed back to callers lives in here."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[str, str], Tensor] = {}

    def get(self, key: tuple[str, str], shape: Sequence[int], like: Tensor) -> Tensor:
        if like.device.type not in _REUSE_DEVICES:
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        numel = math.prod(shape)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype:
            buf = self._bufs[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)

    def padded(self, key: tuple[str, str], shape: Sequence[int], like: Tensor) -> Tensor:
        """A ``shape`` buffer whose elements outside what callers write stay zero (padding borders)."""
        if like.device.type not in _REUSE_DEVICES:
            return torch.zeros(shape, dtype=like.dtype, device=like.device)
        buf = self._bufs.get(key)
        if (buf is None or buf.shape[1:] != tuple(shape[1:]) or buf.shape[0] < shape[0]
                or buf.dtype != like.dtype or buf.device != like.device):
            buf = self._bufs[key] = torch.zeros(shape, dtype=like.dtype, device=like.device)
        return buf[:shape[0]]

    def clear(self) -> None:
        self._bufs.clear()


class _Work:
    """One recorded layer's share of a step: squared norms, then the clipped sum."""

    chunked = False  # per-sample work done in chunks of samples, interleaved with computing the clip factors
    elems_per_sample = 0  # elements of per-sample intermediates per sample in a chunk
    ghost = False  # ghost norm (else materialized per-sample gradients)

    def __init__(self, layer: _Layer, dtype: torch.dtype, ws: _Workspace, chunk_elems: int) -> None:
        self.layer = layer
        self.dtype = dtype
        self.ws = ws
        self.chunk_elems = chunk_elems
        self.acc: dict[int, Tensor] = {}  # param index -> running clipped sum (chunked materialization)
        self.pending: dict[int, Tensor] = {}  # param index -> (m, ...) per-sample grads of the current chunk

    def whole_batch_sq(self, sq: Tensor) -> None:
        """Add whole-batch (ghost or cheap) squared norms into ``sq``."""

    def chunk_sq(self, s: int, e: int) -> Tensor:
        """Materialize samples ``s:e``'s gradients into ``self.pending``; return their squared norms."""
        raise NotImplementedError

    def drop(self, bad: Tensor) -> None:
        """Zero the rows of ``bad`` samples in whatever ``finish`` reads (non-finite per-sample gradients)."""

    def chunk_accumulate(self, c: Tensor, bad: Tensor | None = None) -> None:
        for i, g in self.pending.items():
            g = g.reshape(g.shape[0], -1)
            if bad is not None:
                g = _zero_rows(g, bad)
            c = c if c.dtype == g.dtype else c.to(g.dtype)
            if i in self.acc:
                self.acc[i].addmv_(g.T, c)
            else:
                self.acc[i] = c @ g
        self.pending = {}

    def finish(self, c: Tensor, grads: list[Tensor | None]) -> None:
        """Write the layer's clipped sums into ``grads`` (indexed like ``clipper.params``)."""
        raise NotImplementedError

    @property
    def route(self) -> str:
        return "opacus" if isinstance(self, _OpacusWork) else "ghost" if self.ghost else "materialize"

    def buf(self, role: str, shape: Sequence[int], like: Tensor) -> Tensor:
        return self.ws.get((self.layer.name, role), shape, like)


def _zero_rows(t: Tensor | None, bad: Tensor) -> Tensor | None:
    """``t`` (batch dim first) with the rows of ``bad`` samples set to zero (NaN and inf included)."""
    if t is None:
        return None
    return torch.where(bad.view(-1, *([1] * (t.dim() - 1))), torch.zeros((), dtype=t.dtype, device=t.device), t)


def _sq_rows(g: Tensor) -> Tensor:
    """Row-wise squared norms of ``g`` viewed as ``(m, -1)``."""
    return torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1).square()


# Ghost norm vs materializing, per layer ("mixed"). Both need the T p d multiply-adds of sum_i c_i g_i (ghost: one
# matmul / conv weight gradient; materialized: the per-sample gradients themselves); on top, the ghost norm costs
# T^2 (p + d) multiply-adds per sample, materializing ~3 memory-bound passes over p d elements (write, norm,
# weighted sum). Calibrated on CPU (PyTorch 2.13, oneDNN/MKL): a pass over an element ~ 5 multiply-adds, the
# break-even at T^2 (p + d) ~ 16 p d.
_GHOST_KAPPA = 16


def _choose_ghost(strategy: Strategy, t: int, p: int, d: int) -> bool:
    """Ghost norm for a weight applied at ``t`` positions with ``p`` outputs and ``d`` inputs (per group)?

    ``"mixed"``: when ``t^2 (p + d) < 16 p d`` (see ``_GHOST_KAPPA``): always for Linear layers without
    sequence dims, for convolutions on small feature maps with many channels.
    """
    if strategy != "mixed":
        return strategy == "ghost"
    return t * t * (p + d) < _GHOST_KAPPA * p * d


class _LinearWork(_Work):
    def __init__(self, layer: _Layer, a: Tensor, b: Tensor, strategy: Strategy, ws: _Workspace,
                 chunk_elems: int) -> None:
        super().__init__(layer, b.dtype, ws, chunk_elems)
        mod: nn.Linear = layer.module  # type: ignore[assignment]
        n, p, d = b.shape[0], mod.out_features, mod.in_features
        self.w = layer.index(mod.weight)
        self.bias = layer.index(mod.bias)
        a = a if a.dtype == b.dtype else a.to(b.dtype)
        self.seq = a.dim() > 2
        if self.seq:
            a, b = a.reshape(n, -1, d), b.reshape(n, -1, p)
        else:
            a, b = a.reshape(n, d), b.reshape(n, p)
        self.a, self.b, self.n = a, b, n
        self.t = a.shape[1] if self.seq else 1
        self.ghost = _choose_ghost(strategy, self.t, p, d)
        self.b_sum = b.sum(1) if self.seq else b  # per-sample bias gradients (n, p)
        if not self.ghost and self.w is not None:
            self.chunked = True
            self.elems_per_sample = p * d

    def drop(self, bad: Tensor) -> None:
        self.a, self.b, self.b_sum = _zero_rows(self.a, bad), _zero_rows(self.b, bad), _zero_rows(self.b_sum, bad)

    def whole_batch_sq(self, sq: Tensor) -> None:
        if self.bias is not None:
            sq += _sq_rows(self.b_sum)
        if not (self.ghost and self.w is not None):
            return
        a, b = self.a, self.b
        if not self.seq:  # ||b_i a_i^T||^2 = ||a_i||^2 ||b_i||^2
            sq += _sq_rows(a) * _sq_rows(b)
            return
        t = self.t
        m = max(1, min(self.n, self.chunk_elems // (2 * t * t)))
        for s in range(0, self.n, m):
            aa, bb = a[s:s + m], b[s:s + m]
            k = aa.shape[0]
            gram_a = torch.bmm(aa, aa.transpose(1, 2), out=self.buf("gram_a", (k, t, t), aa))
            gram_b = torch.bmm(bb, bb.transpose(1, 2), out=self.buf("gram_b", (k, t, t), bb))
            sq[s:s + m] += gram_a.mul_(gram_b).view(k, -1).sum(1)

    def chunk_sq(self, s: int, e: int) -> Tensor:
        a, b = self.a[s:e], self.b[s:e]
        shape = (e - s, b.shape[-1], a.shape[-1])
        if self.seq:
            g = torch.bmm(b.transpose(1, 2), a, out=self.buf("g", shape, b))
        else:
            g = torch.mul(b.unsqueeze(2), a.unsqueeze(1), out=self.buf("g", shape, b))
        self.pending[self.w] = g
        return _sq_rows(g)

    def finish(self, c: Tensor, grads: list[Tensor | None]) -> None:
        c = c if c.dtype == self.dtype else c.to(self.dtype)
        if self.bias is not None:
            grads[self.bias] = c @ self.b_sum
        if self.w is None:
            return
        if self.ghost:  # (c * B)^T A over all samples (and positions): one matmul
            d = self.a.shape[-1]
            cb = self.b * (c.view(-1, 1, 1) if self.seq else c.view(-1, 1))
            grads[self.w] = cb.reshape(-1, cb.shape[-1]).T @ self.a.reshape(-1, d)
        else:
            grads[self.w] = self.acc[self.w].view(self.b.shape[-1], self.a.shape[-1])


class _ConvWork(_Work):
    """Conv1d / Conv2d. Per-sample gradients and the ghost norm's Gram matrices come from the unfolded input:
    a strided view of the padded input copied once, per chunk of samples. Where input channels per group times
    the kernel width beat the output width (all but thin first layers), the input is unfolded channels-last,
    ``(m * groups, T, k * C_in / groups)``, whose copy moves longer contiguous runs; else channels-first,
    ``(m * groups, C_in / groups * k, T)`` (``torch.nn.functional.unfold``'s layout)."""

    def __init__(self, layer: _Layer, x: Tensor, b: Tensor, strategy: Strategy, ws: _Workspace,
                 chunk_elems: int) -> None:
        super().__init__(layer, b.dtype, ws, chunk_elems)
        mod: nn.Conv1d | nn.Conv2d = layer.module  # type: ignore[assignment]
        self.mod = mod
        self.w = layer.index(mod.weight)
        self.bias = layer.index(mod.bias)
        n = b.shape[0]
        self.n, self.x, self.b = n, (x if x.dtype == b.dtype else x.to(b.dtype)), b
        self.spatial = b.shape[2:]
        self.nd = len(self.spatial)
        g = self.g = mod.groups
        self.p_g = mod.out_channels // g
        self.c_g = mod.in_channels // g
        self.t = math.prod(self.spatial)
        self.k = math.prod(mod.kernel_size)
        d_g = self.c_g * self.k
        self.ghost = _choose_ghost(strategy, self.t, self.p_g, d_g)
        self.b_sum = b.flatten(2).sum(2) if self.bias is not None else None
        run = self.spatial[-1] if mod.stride[-1] == 1 else 1  # contiguous run of a channels-first unfold copy
        self.channels_last = self.c_g * mod.kernel_size[-1] > run
        self.xp: Tensor | None = None
        if self.w is not None and not self.ghost:
            self.chunked = True
            # the unfolded input is transient; the per-sample gradients live until the chunk's factors are known
            self.elems_per_sample = mod.out_channels * d_g + mod.in_channels * self.k * self.t // 2

    def _padded(self) -> Tensor:
        """The whole batch's padded input, channels-first or channels-last (contiguous), computed once."""
        if self.xp is None:
            mod, x = self.mod, self.x
            pad = list(mod._reversed_padding_repeated_twice)
            if mod.padding_mode != "zeros":
                x = F.pad(x, pad, mode=mod.padding_mode)
                pad = [0] * len(pad)
            if self.channels_last:
                x = x.movedim(1, -1)
            if any(pad) or self.channels_last:
                lo, hi = pad[0::2][::-1], pad[1::2][::-1]  # per spatial dim, first to last
                core = x.shape[1:-1] if self.channels_last else x.shape[2:]
                sp = [c + a + z for c, a, z in zip(core, lo, hi)]
                shape = [x.shape[0], *sp, x.shape[-1]] if self.channels_last else [*x.shape[:2], *sp]
                out = self.ws.padded((self.layer.name, "xp"), shape, x)
                inner = out[(slice(None),) * (1 if self.channels_last else 2)
                            + tuple(slice(a, a + c) for a, c in zip(lo, core))]
                inner.copy_(x)
                x = out
            self.xp = x
        return self.xp

    def _unfold(self, s: int, e: int) -> Tensor:
        """Samples ``s:e``'s unfolded input (see the class docstring), by a strided view and one copy."""
        mod, nd = self.mod, self.nd
        x = self._padded()[s:e]
        st = x.stride()
        m = e - s
        if self.channels_last:  # x: (m, *padded spatial, C)
            sp = st[1:-1]
            shape = [m, self.g, *self.spatial, *mod.kernel_size, self.c_g]
            strides = [st[0], self.c_g * st[-1], *(sp[i] * mod.stride[i] for i in range(nd)),
                       *(sp[i] * mod.dilation[i] for i in range(nd)), st[-1]]
            out = (m * self.g, self.t, self.k * self.c_g)
        else:
            sp = st[2:]
            shape = [m, x.shape[1], *mod.kernel_size, *self.spatial]
            strides = [st[0], st[1], *(sp[i] * mod.dilation[i] for i in range(nd)),
                       *(sp[i] * mod.stride[i] for i in range(nd))]
            out = (m * self.g, self.c_g * self.k, self.t)
        u = self.buf("unfold", shape, x)
        u.copy_(x.as_strided(shape, strides, x.storage_offset()))
        return u.view(out)

    def _b(self, s: int, e: int) -> Tensor:
        return self.b[s:e].reshape((e - s) * self.g, self.p_g, self.t)

    def drop(self, bad: Tensor) -> None:
        self.x, self.b, self.b_sum = _zero_rows(self.x, bad), _zero_rows(self.b, bad), _zero_rows(self.b_sum, bad)
        self.xp = None

    def whole_batch_sq(self, sq: Tensor) -> None:
        if self.b_sum is not None:
            sq += _sq_rows(self.b_sum)
        if self.w is None or not self.ghost:
            return
        g, t = self.g, self.t
        per_sample = g * (2 * t * t) + self.mod.in_channels * self.k * t
        m = max(1, min(self.n, self.chunk_elems // per_sample))
        for s in range(0, self.n, m):
            e = min(self.n, s + m)
            u, bb = self._unfold(s, e), self._b(s, e)
            shape = ((e - s) * g, t, t)
            ut = (u, u.transpose(1, 2)) if self.channels_last else (u.transpose(1, 2), u)
            gram_u = torch.bmm(*ut, out=self.buf("gram_u", shape, u))
            gram_b = torch.bmm(bb.transpose(1, 2), bb, out=self.buf("gram_b", shape, bb))
            sq[s:e] += gram_u.mul_(gram_b).view(e - s, -1).sum(1)
        self.xp = None

    def chunk_sq(self, s: int, e: int) -> Tensor:
        u = self._unfold(s, e)
        shape = ((e - s) * self.g, self.p_g, self.c_g * self.k)
        gs = torch.bmm(self._b(s, e), u if self.channels_last else u.transpose(1, 2), out=self.buf("g", shape, u))
        gs = gs.view(e - s, -1)
        self.pending[self.w] = gs
        return _sq_rows(gs)

    def finish(self, c: Tensor, grads: list[Tensor | None]) -> None:
        c = c if c.dtype == self.dtype else c.to(self.dtype)
        mod = self.mod
        self.xp = None
        if self.b_sum is not None:
            grads[self.bias] = c @ self.b_sum
        if self.w is None:
            return
        if not self.ghost:
            g = self.acc[self.w]
            if self.channels_last:  # (p, *kernel, C_in / groups) -> (p, C_in / groups, *kernel)
                g = g.view(mod.out_channels, *mod.kernel_size, self.c_g).movedim(-1, 1).contiguous()
            grads[self.w] = g.view_as(mod.weight)
            return
        # sum_i c_i g_i is the convolution's weight gradient for output gradient c * B: the kernel a plain
        # backward runs
        x, padding = self.x, mod.padding
        if isinstance(padding, str) or mod.padding_mode != "zeros":
            pad = mod._reversed_padding_repeated_twice
            x = F.pad(x, pad, mode="constant" if mod.padding_mode == "zeros" else mod.padding_mode)
            padding = (0,) * self.nd
        cb = torch.mul(self.b, c.view(-1, *([1] * (self.b.dim() - 1))), out=self.buf("cb", self.b.shape, self.b))
        _, gw, _ = torch.ops.aten.convolution_backward(
            cb, x, mod.weight.detach().to(self.dtype), None, list(mod.stride), list(padding), list(mod.dilation),
            False, [0] * self.nd, mod.groups, [False, True, False])
        grads[self.w] = gw


class _OpacusWork(_Work):
    """Any other layer: per-sample gradients from Opacus' registered grad sampler for the layer type."""

    def __init__(self, layer: _Layer, inputs: Sequence[Tensor], b: Tensor, ws: _Workspace,
                 chunk_elems: int) -> None:
        super().__init__(layer, b.dtype, ws, chunk_elems)
        self.fn = _opacus_grad_samplers()[type(layer.module)]
        self.inputs, self.b, self.n = list(inputs), b, b.shape[0]
        sliceable = type(layer.module) is not nn.EmbeddingBag and all(
            isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == self.n for a in self.inputs)
        self.chunked = True
        self.whole: dict[int, Tensor] | None = None
        if sliceable:
            self.elems_per_sample = sum(p.numel() for p, _ in layer.slots)
        else:
            self.whole = self._grad_samples(self.inputs, b)

    def _grad_samples(self, inputs: list[Tensor], b: Tensor) -> dict[int, Tensor]:
        out = self.fn(self.layer.module, inputs, b)
        samples: dict[int, Tensor] = {}
        for p, i in self.layer.slots:
            if p not in out:
                raise RuntimeError(f"Opacus' grad sampler for layer '{self.layer.name}' returned no per-sample "
                                   "gradient for one of its trainable parameters")
            samples[i] = out[p]
        return samples

    def chunk_sq(self, s: int, e: int) -> Tensor:
        if self.whole is not None:
            self.pending = {i: g[s:e] for i, g in self.whole.items()}
        else:
            self.pending = self._grad_samples([a[s:e] for a in self.inputs], self.b[s:e])
        total = None
        for g in self.pending.values():
            sq = _sq_rows(g)
            total = sq if total is None else total + sq
        return total

    def finish(self, c: Tensor, grads: list[Tensor | None]) -> None:
        for p, i in self.layer.slots:
            grads[i] = self.acc[i].view_as(p)


def _make_work(layer: _Layer, inputs: tuple[Tensor, ...], b: Tensor, strategy: Strategy, ws: _Workspace,
               chunk_elems: int) -> _Work:
    if layer.kind == "linear":
        return _LinearWork(layer, inputs[0], b, strategy, ws, chunk_elems)
    if layer.kind == "conv":
        return _ConvWork(layer, inputs[0], b, strategy, ws, chunk_elems)
    return _OpacusWork(layer, inputs, b, ws, chunk_elems)
