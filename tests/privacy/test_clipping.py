"""PerSampleClipper against Opacus' hooks mode and torch.func per-sample gradients (float64)."""

from __future__ import annotations

import copy
import functools
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lightning_privacy.errors import UserInputError
from lightning_privacy.models.cnn import PaperCNN
from lightning_privacy.privacy.clipping import ClippedSum, PerSampleClipper

STRATEGIES = ["mixed", "ghost", "materialize"]

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing", "ignore:Using padding='same'")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny float64 tensors: intra-op threads only add synchronization (and spin badly on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------- models


class ConvZoo(nn.Module):
    """Conv1d, grouped, strided, dilated, 'same'-padded convolutions (zero padding: what Opacus supports)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(3, 8, 5, stride=2, padding=2)
        self.c2 = nn.Conv1d(8, 8, 3, groups=4, dilation=2, padding=2)
        self.c3 = nn.Conv2d(3, 6, 3, stride=2, dilation=2, padding=2, groups=3)
        self.c4 = nn.Conv2d(6, 4, (2, 3), padding="same", bias=False)
        self.c5 = nn.Conv2d(4, 4, 1, padding="valid")
        self.out = nn.Linear(8 * 8 + 4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (n, 3, 16)
        a = self.c2(torch.tanh(self.c1(x))).flatten(1)
        b = self.c5(torch.tanh(self.c4(torch.tanh(self.c3(x.view(-1, 3, 4, 4).repeat(1, 1, 2, 2))))))
        return self.out(torch.tanh(torch.cat([a, b.flatten(1)], 1)))


class PaddingModes(nn.Module):
    """Padding modes Opacus ignores: checked against torch.func instead."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect")
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=2, padding_mode="circular", groups=2)
        self.c3 = nn.Conv1d(4, 3, 4, padding="same", padding_mode="replicate", dilation=2)
        self.out = nn.Linear(3 * 9, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (n, 2, 5, 5)
        h = self.c2(torch.relu(self.c1(x)))  # (n, 4, 4, 4)... flattened to a sequence for the Conv1d
        h = self.c3(torch.tanh(h).flatten(2)[:, :, :9])
        return self.out(torch.tanh(h).flatten(1))


class SeqModel(nn.Module):
    """Embedding, LayerNorm, Linear over 2 extra dims (ghost norm under "mixed") and over 1 (materialized),
    GroupNorm: the Opacus grad-sampler fallback and sequence Linear layers."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.ln = nn.LayerNorm(8)
        self.l1 = nn.Linear(8, 16)  # T = 6: 36 * (16 + 8) < 16 * 16 * 8 -> ghost norm under "mixed"
        self.act = nn.ReLU(inplace=inplace)
        self.l2 = nn.Linear(4, 4)  # T = 24: 576 * 8 >= 16 * 4 * 4 -> materialized under "mixed"
        self.gn = nn.GroupNorm(2, 4)
        self.head = nn.Linear(4, 5)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # idx: (n, 2, 3)
        h = self.act(self.l1(self.ln(self.emb(idx))))  # (n, 2, 3, 16)
        h = torch.tanh(self.l2(h.reshape(-1, 24, 4)))  # (n, 24, 4)
        h = self.gn(h.transpose(1, 2)).mean(2)  # (n, 4)
        return self.head(h)


def ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def paper_cnn() -> PaperCNN:
    """The papers' CNN on 14x14 inputs (float64 convolutions are slow on CPU); its maps are 14, 7, 4 wide, so
    "mixed" materializes conv1 and conv2 and takes the ghost norm for conv3."""
    return PaperCNN(input_shape=(1, 14, 14))


def paper_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 1, 14, 14, dtype=torch.float64), torch.randint(0, 10, (n,))


def zoo_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 3, 16, dtype=torch.float64), torch.randint(0, 5, (n,))


def seq_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, 20, (n, 2, 3)), torch.randint(0, 5, (n,))


def pad_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 2, 5, 5, dtype=torch.float64), torch.randint(0, 4, (n,))


# ---------------------------------------------------------------------- references


def clip_reference(per_sample: list[torch.Tensor], c: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    n = per_sample[0].shape[0]
    norms = torch.stack([g.reshape(n, -1).pow(2).sum(1) for g in per_sample]).sum(0).sqrt()
    factors = (c / norms).clamp(max=1.0)
    return [torch.einsum("n,n...->...", factors, g) for g in per_sample], norms


def opacus_per_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    from opacus import GradSampleModule

    model = copy.deepcopy(model)
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    ce(gsm(x), y).sum().backward()
    out = [p.grad_sample.detach().clone() for p in model.parameters() if p.requires_grad]
    gsm._close()
    return out


def func_per_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}

    def loss(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, {**p, **frozen, **buffers}, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return [grads[k] for k in params]


def run_clipper(model: nn.Module, x: torch.Tensor, y: torch.Tensor, c: float, strategy: str) -> ClippedSum:
    clipper = PerSampleClipper(model, max_grad_norm=c, strategy=strategy)  # type: ignore[arg-type]
    try:
        with clipper.recording():
            loss = ce(model(x), y)
        return clipper.clip_and_sum(loss)
    finally:
        clipper.close()


def assert_matches(out: ClippedSum, per_sample: list[torch.Tensor], c: float) -> None:
    ref, norms = clip_reference(per_sample, c)
    torch.testing.assert_close(out.norms, norms, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(out.factors, (c / norms).clamp(max=1.0), rtol=1e-5, atol=1e-12)
    assert len(out.grads) == len(ref)
    for g, r in zip(out.grads, ref):
        assert g.shape == r.shape
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-10)


# ---------------------------------------------------------------------- exactness


@functools.cache
def opacus_case(case: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    model, data = {"paper_cnn": (paper_cnn, paper_data), "conv_zoo": (ConvZoo, zoo_data),
                   "seq": (SeqModel, seq_data)}[case]
    model = model().double()
    x, y = data(6)
    return model, x, y, opacus_per_sample(model, x, y)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", ["paper_cnn", "conv_zoo", "seq"])
def test_matches_opacus(case: str, strategy: str) -> None:
    model, x, y, per_sample = opacus_case(case)
    norms = clip_reference(per_sample, 1.0)[1]
    c = float(norms.median())  # some samples clipped, some not
    clipper = PerSampleClipper(model, max_grad_norm=c, strategy=strategy)  # type: ignore[arg-type]
    with clipper.recording():
        loss = ce(model(x), y)
    out = clipper.clip_and_sum(loss)
    clipper.close()
    assert_matches(out, per_sample, c)
    if strategy != "mixed":
        assert {r for r in clipper.plan.values() if r != "opacus"} == {strategy}
    elif case == "paper_cnn":
        assert clipper.plan == {"features.0": "materialize", "features.3": "materialize", "features.6": "ghost",
                                "dense.1": "ghost", "prediction": "ghost"}
    elif case == "seq":
        assert clipper.plan == {"emb": "opacus", "ln": "opacus", "l1": "ghost", "l2": "materialize",
                                "gn": "opacus", "head": "ghost"}
    assert (out.factors < 1).any() and (out.factors == 1).any()


class BagModel(nn.Module):
    """EmbeddingBag with offsets: Opacus' sampler takes the whole batch (its inputs are not batch-first)."""

    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(20, 6, mode="mean")
        self.head = nn.Linear(6, 3)

    def forward(self, idx: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.head(self.bag(idx, offsets))


@pytest.mark.parametrize("case", ["paper_cnn", "conv_zoo", "seq"])
def test_one_clipper_many_steps_varying_batch(case: str) -> None:
    """Scratch buffers reused across steps of different (Poisson) batch sizes."""
    model, x, y, per_sample = opacus_case(case)
    with PerSampleClipper(model, max_grad_norm=0.5) as clipper:
        for rows in ([0, 1, 2, 3, 4, 5], [4, 1], [], [2, 3, 5], [0, 1, 2, 3, 4, 5]):
            idx = torch.tensor(rows, dtype=torch.long)
            with clipper.recording():
                loss = ce(model(x[idx]), y[idx])
            out = clipper.clip_and_sum(loss)
            if rows:
                assert_matches(out, [g[idx] for g in per_sample], 0.5)
            else:
                assert out.norms.numel() == 0 and all(torch.count_nonzero(g) == 0 for g in out.grads)


@functools.cache
def bag_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    from opacus import GradSampleModule

    torch.manual_seed(4)
    model = BagModel().double()
    idx, offsets, y = torch.randint(0, 20, (11,)), torch.tensor([0, 2, 3, 7, 9]), torch.randint(0, 3, (5,))
    gsm = GradSampleModule(copy.deepcopy(model), batch_first=True, loss_reduction="sum")
    ce(gsm(idx, offsets), y).sum().backward()
    per_sample = [p.grad_sample.detach().clone() for p in gsm.parameters()]
    gsm._close()
    return model, idx, offsets, y, per_sample


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_small_chunks_and_whole_batch_fallback_match_opacus(strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_privacy.privacy import clipping

    monkeypatch.setitem(clipping._CHUNK_ELEMS, "cpu", 1)  # one sample per chunk everywhere
    if strategy == "mixed":  # and fresh scratch buffers each call, as on CUDA
        monkeypatch.setattr(clipping, "_REUSE_DEVICES", set())
    for case in ("paper_cnn", "seq"):
        model, x, y, per_sample = opacus_case(case)
        c = float(clip_reference(per_sample, 1.0)[1].median())
        assert_matches(run_clipper(model, x, y, c, strategy), per_sample, c)

    model, idx, offsets, y, per_sample = bag_case()
    c = float(clip_reference(per_sample, 1.0)[1].median())
    with PerSampleClipper(model, max_grad_norm=c, strategy=strategy) as clipper:  # type: ignore[arg-type]
        with clipper.recording():
            loss = ce(model(idx, offsets), y)
        assert_matches(clipper.clip_and_sum(loss), per_sample, c)


def test_mixed_rule_on_paper_cnn_shapes() -> None:
    from lightning_privacy.privacy.clipping import _choose_ghost

    # (T, p, d) per layer: conv1 28x28 maps, conv2 14x14, conv3 7x7, dense, prediction
    shapes = [(784, 32, 9), (196, 64, 288), (49, 128, 576), (1, 128, 2048), (1, 10, 128)]
    assert [_choose_ghost("mixed", *s) for s in shapes] == [False, False, False, True, True]
    assert _choose_ghost("mixed", 16, 256, 2304)  # a 4x4-map conv with 256 channels: ghost norm
    assert _choose_ghost("mixed", 6, 16, 8) and not _choose_ghost("mixed", 24, 4, 4)  # SeqModel.l1, l2
    assert all(_choose_ghost("ghost", *s) for s in shapes)
    assert not any(_choose_ghost("materialize", *s) for s in shapes)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_padding_modes_and_inplace_match_torch_func(strategy: str) -> None:
    torch.manual_seed(1)
    for model, (x, y) in ((PaddingModes().double(), pad_data(5)), (SeqModel(inplace=True).double(), seq_data(5))):
        per_sample = func_per_sample(model, x, y)
        c = float(clip_reference(per_sample, 1.0)[1].median())
        assert_matches(run_clipper(model, x, y, c, strategy), per_sample, c)


def test_frozen_params_skipped_and_unused_layer_zero() -> None:
    torch.manual_seed(2)
    model = paper_cnn().double()
    model.features[0].requires_grad_(False)
    model.features[3].weight.requires_grad_(False)  # bias alone stays trainable
    model.dense[1].weight.requires_grad_(False)
    model.prediction.bias.requires_grad_(False)
    x, y = paper_data(4)
    per_sample = opacus_per_sample(model, x, y)
    clipper = PerSampleClipper(model, max_grad_norm=0.1)
    assert clipper.params == [p for p in model.parameters() if p.requires_grad]
    assert all(p is not model.features[0].weight for p in clipper.params)
    with clipper.recording():
        loss = ce(model(x), y)
    assert_matches(clipper.clip_and_sum(loss), per_sample, 0.1)
    clipper.close()

    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.unused(x)  # runs, but its output never reaches the loss
            return self.used(x)

    m = WithUnused().double()
    out = run_clipper(m, torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 3, (5,)), 1.0, "mixed")
    assert all(torch.count_nonzero(g) == 0 for g in out.grads[2:])
    assert all(torch.count_nonzero(g) > 0 for g in out.grads[:2])


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 6), log_c=st.floats(-3, 1), scale=st.floats(0.1, 10.0), seed=st.integers(0, 2**16),
       strategy=st.sampled_from(STRATEGIES))
def test_clipped_per_sample_norms_bounded(n: int, log_c: float, scale: float, seed: int, strategy: str) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 4)).double()
    x, y = scale * torch.randn(n, 1, 7, 7, dtype=torch.float64), torch.randint(0, 4, (n,))
    c = 10.0**log_c
    out = run_clipper(model, x, y, c, strategy)
    per_sample = func_per_sample(model, x, y)
    clipped_norms = out.factors * torch.stack([g.reshape(n, -1).pow(2).sum(1) for g in per_sample]).sum(0).sqrt()
    assert (clipped_norms <= c * (1 + 1e-6)).all()
    small = out.norms <= c
    assert (out.factors[small] == 1).all()  # unclipped samples are left unchanged
    for g, ps in zip(out.grads, per_sample):
        torch.testing.assert_close(g, torch.einsum("n,n...->...", out.factors, ps), rtol=1e-6, atol=1e-12)


def test_empty_batch_float32() -> None:
    model = PaperCNN()
    clipper = PerSampleClipper(model, max_grad_norm=1.0)
    with clipper.recording():
        loss = ce(model(torch.randn(0, 1, 28, 28)), torch.zeros(0, dtype=torch.long))
    out = clipper.clip_and_sum(loss)
    assert out.norms.shape == (0,) and out.factors.shape == (0,)
    assert [g.shape for g in out.grads] == [p.shape for p in clipper.params]
    assert all(torch.count_nonzero(g) == 0 for g in out.grads)
    clipper.close()


def test_float32_close_to_float64() -> None:
    torch.manual_seed(3)
    model = PaperCNN()
    x, y = torch.randn(3, 1, 28, 28), torch.randint(0, 10, (3,))
    out32 = run_clipper(model, x, y, 0.5, "mixed")
    out64 = run_clipper(copy.deepcopy(model).double(), x.double(), y, 0.5, "mixed")
    assert all(g.dtype == torch.float32 for g in out32.grads)
    for a, b in zip(out32.grads, out64.grads):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------- lifecycle


def test_hooks_removed_and_module_copyable() -> None:
    model = PaperCNN()
    clipper = PerSampleClipper(model, max_grad_norm=1.0)
    assert not isinstance(clipper, nn.Module)
    assert model.prediction._forward_hooks
    clone = copy.deepcopy(model)  # no cycle through the clipper; the copy carries no live hook
    restored = pickle.loads(pickle.dumps(model))
    with clipper.recording():
        clone(torch.randn(2, 1, 28, 28))
        restored(torch.randn(2, 1, 28, 28))
    assert not clipper._records  # the copies are not recorded
    clipper.close()
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError, match="closed"):
        with clipper.recording():
            pass


def test_no_grad_forward_not_recorded_and_records_consumed() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    with PerSampleClipper(model, max_grad_norm=1.0) as clipper:
        with clipper.recording(), torch.no_grad():
            model(torch.randn(4, 3))
        with pytest.raises(UserInputError, match="no forward pass was recorded"):
            clipper.clip_and_sum(torch.ones(4, requires_grad=True))


# ---------------------------------------------------------------------- errors


def test_batchnorm_rejected_with_groupnorm_hint() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(UserInputError, match=r"'1' \(BatchNorm2d\).*GroupNorm"):
        PerSampleClipper(model, max_grad_norm=1.0)


def test_unsupported_layer_and_nonleaf_param_rejected() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.s

    with pytest.raises(UserInputError, match=r"'block\.scale' \(Scale\).*freeze"):
        PerSampleClipper(_named(block=_named(lin=nn.Linear(3, 3), scale=Scale())), max_grad_norm=1.0)
    frozen = _named(block=_named(lin=nn.Linear(3, 3), scale=Scale().requires_grad_(False)))
    PerSampleClipper(frozen, max_grad_norm=1.0).close()  # frozen: fine

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.gain = nn.Parameter(torch.ones(3))

    with pytest.raises(UserInputError, match=r"'holder' \(Holder\).*'gain'"):
        PerSampleClipper(_named(holder=Holder()), max_grad_norm=1.0)

    class SameForward(nn.Linear):
        pass

    class OtherForward(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    PerSampleClipper(_named(lin=SameForward(3, 3)), max_grad_norm=1.0).close()  # handled as nn.Linear
    with pytest.raises(UserInputError, match=r"'lin' \(OtherForward\)"):
        PerSampleClipper(_named(lin=OtherForward(3, 3)), max_grad_norm=1.0)


def test_reused_and_tied_layers_rejected() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(torch.tanh(self.lin(x)))

    model = Twice()
    clipper = PerSampleClipper(model, max_grad_norm=1.0)
    with pytest.raises(UserInputError, match=r"'lin' \(Linear\) ran twice"):
        with clipper.recording():
            model(torch.randn(2, 3))
    clipper.close()

    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    with pytest.raises(UserInputError, match=r"'b\.weight' is shared with layer 'a'"):
        PerSampleClipper(_named(a=a, b=b), max_grad_norm=1.0)


def test_bad_arguments() -> None:
    model = nn.Linear(3, 2)
    with pytest.raises(UserInputError, match="max_grad_norm"):
        PerSampleClipper(model, max_grad_norm=0.0)
    with pytest.raises(UserInputError, match="strategy"):
        PerSampleClipper(model, max_grad_norm=1.0, strategy="fast")  # type: ignore[arg-type]
    with PerSampleClipper(model, max_grad_norm=1.0) as clipper:
        with clipper.recording():
            out = model(torch.randn(4, 3))
        with pytest.raises(UserInputError, match=r"shape \(n,\)"):
            clipper.clip_and_sum(out)


def _named(**children: nn.Module) -> nn.Module:
    m = nn.Module()
    for k, v in children.items():
        m.add_module(k, v)
    return m


# ---------------------------------------------------------------------- issue 9: bad records, reused parameters


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.norm(self.conv(x))).flatten(1))


@pytest.mark.parametrize("bad", ["nan", "overflow"])
def test_a_non_finite_sample_contributes_zero_in_every_route(bad: str) -> None:
    """Issue 9.7: a NaN input, or a per-sample norm beyond float32's range, leaves the others' clipped sum intact
    and the same whichever route (ghost norm or materialized) each layer takes; the sample is counted."""
    torch.manual_seed(0)
    model = SmallCNN()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,))
    x[2] = float("nan") if bad == "nan" else 1e30
    keep = torch.arange(6) != 2
    results = {}
    for strategy in STRATEGIES:
        with PerSampleClipper(model, max_grad_norm=1.0, strategy=strategy) as clipper:
            with clipper.recording():
                loss = F.cross_entropy(model(x), y, reduction="none")
            out = clipper.clip_and_sum(loss)
            with clipper.recording():
                clean = clipper.clip_and_sum(F.cross_entropy(model(x[keep]), y[keep], reduction="none"))
        assert out.nonfinite == 1 and float(out.factors[2]) == 0.0
        for g, c in zip(out.grads, clean.grads):
            assert torch.isfinite(g).all()
            torch.testing.assert_close(g, c, atol=1e-5, rtol=1e-4)
        results[strategy] = out.grads
    for g, h in zip(results["ghost"], results["materialize"]):
        torch.testing.assert_close(g, h, atol=1e-5, rtol=1e-4)


class ReusedWeight(nn.Module):
    def __init__(self, functional_only: bool = False) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
        self.functional_only = functional_only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        if self.functional_only:
            return F.linear(h, self.b.weight, self.b.bias)
        return self.b(h) + F.linear(h, self.a.weight)[:, :2]


@pytest.mark.parametrize("functional_only", [False, True])
def test_a_parameter_used_outside_its_layer_is_refused(functional_only: bool) -> None:
    model = ReusedWeight(functional_only)
    with PerSampleClipper(model, max_grad_norm=1.0) as clipper:
        with clipper.recording():
            loss = model(torch.randn(5, 4)).sum(1)
        with pytest.raises(UserInputError, match="reaches the loss"):
            clipper.clip_and_sum(loss)
