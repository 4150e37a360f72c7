import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything

from lightning_privacy.cli import cli
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.relaxloss import ASCENT, DESCENT, FLATTEN, RelaxLoss, flattened_targets
from lightning_privacy.errors import UserInputError
from tests.conftest import REPO

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")


def _batch_with_loss_about(loss_is_high: bool):
    """Logits whose mean CE is far above (confidently wrong) or far below (confidently right) alpha = 1."""
    y = torch.tensor([0, 1, 2, 1])
    sign = -1.0 if loss_is_high else 1.0
    logits = sign * 5.0 * F.one_hot(y, 3).float()
    logits[:, 0] += 0.1 * torch.arange(4)  # a little variety in p_gt
    return logits.requires_grad_(), y


def test_descent_when_the_batch_loss_is_at_least_alpha():
    model = RelaxLoss(alpha=1.0, num_classes=3, input_shape=(1, 8, 8))
    logits, y = _batch_with_loss_about(loss_is_high=True)
    for epoch in (1, 2):
        objective, branch = model.relax_objective(logits, y, paper_epoch=epoch)
        assert branch == DESCENT and torch.allclose(objective, F.cross_entropy(logits, y))


def test_ascent_on_even_paper_epochs_and_flattening_on_odd_ones_below_alpha():
    model = RelaxLoss(alpha=1.0, num_classes=3, input_shape=(1, 8, 8))
    logits, y = _batch_with_loss_about(loss_is_high=False)
    objective, branch = model.relax_objective(logits, y, paper_epoch=2)
    assert branch == ASCENT and torch.allclose(objective, -F.cross_entropy(logits, y))
    objective, branch = model.relax_objective(logits, y, paper_epoch=1)
    assert branch == FLATTEN
    soft = flattened_targets(logits.softmax(-1), y)
    assert torch.allclose(objective, -(soft * logits.log_softmax(-1)).sum(-1).mean())


@pytest.mark.parametrize("lightning_epoch, expected", [(0, FLATTEN), (1, ASCENT), (2, FLATTEN), (3, ASCENT)])
def test_training_step_uses_the_papers_one_based_epoch(monkeypatch, lightning_epoch, expected):
    model = RelaxLoss(alpha=100.0, num_classes=10, input_shape=(1, 8, 8))  # every batch is below alpha
    monkeypatch.setattr(RelaxLoss, "current_epoch", property(lambda self: lightning_epoch))
    seen = []
    original = model.relax_objective
    monkeypatch.setattr(model, "relax_objective",
                        lambda *a, **k: seen.append(original(*a, **k)[1]) or original(*a, **k))
    batch = (torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    with pytest.warns(UserWarning):  # self.log without a trainer
        loss = model.training_step(batch, 0)
    assert seen == [expected] and loss.requires_grad


def test_soft_labels_keep_p_gt_and_spread_the_rest_evenly():
    probs = torch.tensor([[0.7, 0.2, 0.05, 0.05], [0.1, 0.1, 0.3, 0.5]])
    y = torch.tensor([0, 3])
    soft = flattened_targets(probs, y)
    expected = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.5 / 3, 0.5 / 3, 0.5 / 3, 0.5]])
    assert torch.allclose(soft, expected)
    assert torch.allclose(soft.sum(-1), torch.ones(2))
    assert torch.equal(soft[torch.arange(2), y], probs[torch.arange(2), y])


def test_max_gt_prob_caps_p_gt():
    soft = flattened_targets(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]), torch.tensor([0, 0]), max_gt_prob=0.3)
    assert torch.allclose(soft, torch.tensor([[0.3, 0.35, 0.35], [0.1, 0.45, 0.45]]))


def test_flattening_target_is_detached():
    model = RelaxLoss(alpha=1.0, num_classes=3, input_shape=(1, 8, 8))
    logits = torch.tensor([[2.0, 0.5, -1.0]], requires_grad=True)
    y = torch.tensor([0])
    model.flattening_loss(logits, y).backward()
    soft = flattened_targets(logits.softmax(-1), y)
    assert not soft.requires_grad
    # with t constant, d/dz [-sum_c t_c log p_c] = p - t
    assert torch.allclose(logits.grad, logits.softmax(-1).detach() - soft)


def test_flatten_incorrect_only_ignores_correct_predictions():
    model = RelaxLoss(alpha=1.0, flatten_incorrect_only=True, num_classes=3, input_shape=(1, 8, 8))
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    y = torch.tensor([0, 0])  # first correct, second wrong
    soft = flattened_targets(logits.softmax(-1), y)
    wrong_only = -(soft[1] * logits[1].log_softmax(-1)).sum() / 2
    assert torch.allclose(model.flattening_loss(logits, y), wrong_only)


@pytest.mark.parametrize("kwargs", [{"alpha": 0.0}, {"alpha": -1.0}, {"max_gt_prob": 0.0}, {"max_gt_prob": 1.5},
                                    {"lr_gamma": 0.0}, {"lr_milestones": [5, 2]}, {"momentum": -0.1}])
def test_bad_hyperparameters(kwargs):
    with pytest.raises(UserInputError):
        RelaxLoss(**kwargs)


def test_paper_sgd_schedule():
    model = RelaxLoss(optimizer="sgd", lr=0.1, weight_decay=1e-4, lr_milestones=[2, 4])
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-4)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert isinstance(RelaxLoss().configure_optimizers(), torch.optim.Adam)


def test_fits_on_digits_and_logs_the_branch():
    seed_everything(0)
    dm = Digits(validation=0.1, test_fraction=0.3)
    model = RelaxLoss(alpha=1.0, num_classes=dm.num_classes, input_shape=dm.input_shape)
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert "train/relax_branch" in trainer.logged_metrics
    assert trainer.test(model, datamodule=dm, verbose=False)[0]["test/acc"] > 0.3


@pytest.mark.parametrize("name", ["relaxloss.yaml", "relaxloss_paper_sgd.yaml", "relaxloss_cifar10.yaml",
                                  "relaxloss_cifar100.yaml"])
def test_cli_accepts_the_configs(in_tmp, name):
    c = cli(["--config", QUICKSTART, "--config", str(REPO / "conf" / "defense" / name)], run=False)
    assert isinstance(c.model, RelaxLoss)


@pytest.mark.parametrize("name, alpha", [("relaxloss_cifar10.yaml", 1.0), ("relaxloss_cifar100.yaml", 3.0)])
def test_cifar_configs_flatten_incorrect_predictions_only_with_table_4_alpha(name, alpha):
    """App. B.3: flattening restricted to incorrect predictions for CIFAR-10/100; Table 4's alpha (ResNet20)."""
    import yaml

    args = yaml.safe_load((REPO / "conf" / "defense" / name).read_text())["model"]["init_args"]
    assert args["flatten_incorrect_only"] is True and args["alpha"] == alpha


@pytest.mark.parametrize("alpha", [0.5, pytest.param(1.0, marks=pytest.mark.slow),
                                   pytest.param(2.0, marks=pytest.mark.slow)])
def test_alpha_sweep_configs(in_tmp, alpha):
    path = REPO / "conf" / "experiments" / "sweeps" / "relaxloss_alpha" / f"alpha_{alpha}.yaml"
    c = cli(["--config", str(path)], run=False)
    assert isinstance(c.model, RelaxLoss) and c.model.hparams.alpha == alpha
    assert c.config["tracking"]["run_name"] == f"fmnist-relaxloss-alpha-{alpha}"
