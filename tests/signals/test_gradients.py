import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_privacy.signals.gradients import collect_grad_norms, per_sample_grad_norms
from lightning_privacy.errors import UserInputError
from lightning_privacy.models.cnn import PaperCNN


def _reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """One sample at a time with plain autograd, in eval mode."""
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    out: dict[str, list[float]] = {k: [] for k in ("grad_x_l1", "grad_x_l2", "grad_w_l1", "grad_w_l2")}
    for xi, yi in zip(x, y):
        xi = xi[None].clone().requires_grad_(True)
        gx, *gw = torch.autograd.grad(F.cross_entropy(model(xi), yi[None]), [xi, *params])
        flat_w = torch.cat([g.flatten() for g in gw]).double()
        out["grad_x_l1"].append(float(gx.double().abs().sum()))
        out["grad_x_l2"].append(float(gx.double().norm()))
        out["grad_w_l1"].append(float(flat_w.abs().sum()))
        out["grad_w_l2"].append(float(flat_w.norm()))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


def _bn_model() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 8 * 8, 4))
    model.train()
    with torch.no_grad():  # non-trivial running statistics, then eval mode must use them
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8) * 2 + 1)
    return model


@pytest.mark.parametrize("make", [lambda: PaperCNN((1, 8, 8), 3, channels=(4, 4, 4), hidden=8), _bn_model],
                         ids=["cnn", "batchnorm"])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-6), (torch.float32, 1e-4)], ids=["f64", "f32"])
def test_matches_per_sample_autograd_and_restores_mode(make, dtype, rtol):
    """float64 pins the maths; float32 (summation order differs) checks the usual dtype runs."""
    torch.manual_seed(0)
    model = make().to(dtype)
    x, y = torch.randn(10, 1, 8, 8, dtype=dtype), torch.randint(0, 3, (10,))
    model.train()
    got = per_sample_grad_norms(model, x, y)
    assert model.training
    want = _reference(model, x, y)
    for k, v in want.items():
        assert got[k].dtype == torch.float64 and got[k].shape == (10,)
        assert bool((v > 0).all())
        torch.testing.assert_close(got[k], v, rtol=rtol, atol=0)
    model.eval()
    per_sample_grad_norms(model, x, y)
    assert not model.training


def test_chunking_and_loader_give_the_same_norms():
    torch.manual_seed(1)
    model = PaperCNN((1, 8, 8), 3, channels=(4, 4, 4), hidden=8).double()
    x, y = torch.randn(11, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (11,))
    whole = per_sample_grad_norms(model, x, y, chunk_size=None)
    chunked = per_sample_grad_norms(model, x, y, chunk_size=3)
    looped = collect_grad_norms(model, DataLoader(TensorDataset(x, y), batch_size=4), chunk_size=2)
    for k in whole:
        torch.testing.assert_close(chunked[k], whole[k], rtol=1e-12, atol=0)
        torch.testing.assert_close(looped[k], whole[k], rtol=1e-12, atol=0)
        assert looped[k].device.type == "cpu" and looped[k].dtype == torch.float64


def test_frozen_parameters_are_excluded_from_grad_w():
    torch.manual_seed(2)
    model = PaperCNN((1, 8, 8), 3, channels=(4, 4, 4), hidden=8).double()
    model.features.requires_grad_(False)
    x, y = torch.randn(5, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (5,))
    got = per_sample_grad_norms(model, x, y)
    want = _reference(model, x, y)  # differentiates only parameters that require grad
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=0)


def test_frozen_model_is_a_user_error():
    model = PaperCNN((1, 8, 8), 3, channels=(4, 4, 4), hidden=8).requires_grad_(False)
    with pytest.raises(UserInputError, match="grad_w_l2.*gradients"):
        per_sample_grad_norms(model, torch.randn(2, 1, 8, 8), torch.zeros(2).long(), attacks=["grad_w_l2"])
