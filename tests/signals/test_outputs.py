import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_privacy.signals.outputs import collect_signals
from lightning_privacy.models.predict import stable_cross_entropy


def test_signals_are_aligned_and_restore_training_mode():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    model.train()
    s = collect_signals(model, DataLoader(TensorDataset(x, y), batch_size=3))
    assert model.training
    model.eval()
    assert torch.allclose(s.logits, model(x).detach())
    assert torch.equal(s.labels, y)
    assert torch.allclose(s.losses, F.cross_entropy(model(x).double(), y, reduction="none"))


def test_confident_losses_do_not_collapse_into_ties():
    logits = torch.zeros(4, 2)
    logits[:, 0] = torch.tensor([40.0, 41.0, 42.0, 43.0])  # cross-entropy is exactly 0 for all four, even in float64
    assert F.cross_entropy(logits.double(), torch.zeros(4).long(), reduction="none").unique().numel() == 1
    s = collect_signals(_Const(logits),
                        DataLoader(TensorDataset(torch.zeros(4, 1), torch.zeros(4).long()), batch_size=4))
    assert s.losses.unique().numel() == 4


class _Const(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: x.shape[0]]


def test_stable_cross_entropy_matches_torch_where_torch_is_exact():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(200, 7, generator=g) * 3, torch.randint(0, 7, (200,), generator=g)
    assert torch.allclose(stable_cross_entropy(logits, y), F.cross_entropy(logits.double(), y, reduction="none"),
                          rtol=1e-12, atol=1e-12)
    margin = torch.tensor([[50.0, 0.0, -3.0]])
    assert stable_cross_entropy(margin, torch.tensor([0])).item() == pytest.approx(torch.exp(torch.tensor(-50.0,
        dtype=torch.float64)).item() + torch.exp(torch.tensor(-53.0, dtype=torch.float64)).item(), rel=1e-9)
