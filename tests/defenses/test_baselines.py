import math

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch import nn

from lightning_privacy.cli import cli
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.confidence_penalty import ConfidencePenalty
from lightning_privacy.defenses.distillation import SelfDistillation
from lightning_privacy.defenses.dropout import LastLayerDropout
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.defenses.label_smoothing import LabelSmoothing
from lightning_privacy.errors import UserInputError
from tests.conftest import REPO

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")
LN2 = math.log(2)
P = torch.tensor([[0.5, 0.25, 0.25]])  # log P as logits gives p = P
Y = torch.tensor([0])


def _fit(model, max_epochs=1, **trainer_kwargs):
    seed_everything(0)
    dm = Digits(validation=0.1, test_fraction=0.3)
    trainer = Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    return trainer, dm


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> str:
    """A real Lightning checkpoint of an ERM fitted on Digits for one epoch."""
    root = tmp_path_factory.mktemp("teacher")
    dm = Digits(validation=0.1, test_fraction=0.3)
    trainer, _ = _fit(ERM(num_classes=dm.num_classes, input_shape=dm.input_shape), default_root_dir=root)
    path = root / "teacher.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


def _digits_shape():
    dm = Digits(validation=0.1, test_fraction=0.3)
    return {"num_classes": dm.num_classes, "input_shape": dm.input_shape}


def test_label_smoothing_matches_eq_14():
    model = LabelSmoothing(smoothing=0.2, num_classes=3, input_shape=(1, 8, 8))
    kl_uniform = -math.log(3) + 5 / 3 * LN2  # (1/3) sum_c log((1/3) / p_c)
    expected = 0.2 * kl_uniform + 0.8 * LN2
    assert model.loss(P.log(), Y).item() == pytest.approx(expected, rel=1e-6)


def test_confidence_penalty_matches_eq_15():
    model = ConfidencePenalty(beta=0.5, num_classes=3, input_shape=(1, 8, 8))
    entropy = 1.5 * LN2  # -(0.5 log 0.5 + 2 * 0.25 log 0.25)
    assert model.loss(P.log(), Y).item() == pytest.approx(LN2 - 0.5 * entropy, rel=1e-6)


def test_distillation_matches_eq_17(teacher_ckpt):
    model = SelfDistillation(teacher_ckpt=teacher_ckpt, T=2.0, alpha=0.5, **_digits_shape())
    student = 2 * torch.tensor([[0.5, 0.25, 0.25]]).log()  # softmax(student / 2) = (.5, .25, .25)
    teacher = 2 * torch.tensor([[0.25, 0.5, 0.25]]).log()
    kl = 0.25 * LN2  # KL(teacher || student)
    ce = math.log(1.5)  # softmax(student) = (2/3, 1/6, 1/6)
    expected = 0.5 * 4 * kl + 0.5 * ce
    assert model.distillation_loss(student, teacher, Y).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("cls, kwargs", [(LabelSmoothing, {"smoothing": 1.0}), (LabelSmoothing, {"smoothing": -0.1}),
                                         (ConfidencePenalty, {"beta": -1.0}), (LastLayerDropout, {"rate": 0.0}),
                                         (LastLayerDropout, {"rate": 1.0})])
def test_bad_hyperparameters(cls, kwargs):
    with pytest.raises(UserInputError):
        cls(**kwargs)


def test_dropout_is_only_on_the_last_layers_input():
    model = LastLayerDropout(rate=0.5, num_classes=3, input_shape=(1, 8, 8))
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 and model.last_layer_dropout is dropouts[0] and dropouts[0].p == 0.5
    assert isinstance(model.last_layer, nn.Linear) and model.last_layer is model.net.prediction
    model.train()
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model.penultimate(x), model.penultimate(x))
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    assert set(model.state_dict()) == set(ERM(num_classes=3, input_shape=(1, 8, 8)).state_dict())


def test_distillation_rejects_a_teacher_of_another_shape(tmp_path):
    other = ERM(num_classes=5, input_shape=(1, 8, 8))
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams)}, path)
    with pytest.raises(UserInputError, match="num_classes 5"):
        SelfDistillation(teacher_ckpt=str(path), num_classes=10, input_shape=(1, 8, 8))
    wrong_hidden = ERM(num_classes=10, input_shape=(1, 8, 8),
                       net={"class_path": "lightning_privacy.models.cnn.PaperCNN", "init_args": {"hidden": 16}})
    torch.save({"state_dict": wrong_hidden.state_dict(), "hyper_parameters": {}}, path)
    with pytest.raises(UserInputError, match="mismatching shapes"):
        SelfDistillation(teacher_ckpt=str(path), num_classes=10, input_shape=(1, 8, 8))


def test_distillation_without_a_teacher_trains_and_caches_one_on_the_members(tmp_path, monkeypatch):
    """No teacher_ckpt (the config's default): fit trains the teacher first (ERM, the student's network, the
    members), caches it, and a second student reuses the cached teacher without training."""
    from lightning_privacy.defenses import distillation

    fits = []
    original = distillation.SubsetDataModule

    class Spy(original):
        def __init__(self, parent, indices):
            fits.append(indices.clone())
            super().__init__(parent, indices)

    monkeypatch.setattr(distillation, "SubsetDataModule", Spy)
    cache = str(tmp_path / "teachers")
    student = SelfDistillation(teacher_cache_dir=cache, teacher_epochs=1, **_digits_shape())
    assert student.teacher is None
    trainer, dm = _fit(student, max_steps=2)
    assert len(fits) == 1 and torch.equal(fits[0], dm.training_indices())
    assert student.teacher is not None and not student.teacher.training
    assert type(student.teacher) is type(student.net) and "teacher" not in dict(student.named_children())
    again = SelfDistillation(teacher_cache_dir=cache, teacher_epochs=1, **_digits_shape())
    _fit(again, max_steps=1)
    assert len(fits) == 1  # loaded from the cache
    assert all(torch.equal(a, b) for a, b in zip(student.teacher.state_dict().values(),
                                                 again.teacher.state_dict().values()))


def test_teacher_is_frozen_and_outside_the_optimizer_and_checkpoint(teacher_ckpt):
    model = SelfDistillation(teacher_ckpt=teacher_ckpt, **_digits_shape())
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    trainer, _ = _fit(model, max_steps=3)
    assert all(torch.equal(v, model.teacher.state_dict()[k]) for k, v in before.items())
    assert not model.teacher.training and not any(p.requires_grad for p in model.teacher.parameters())
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in model.teacher.parameters()}
    assert not any(k.startswith("teacher") for k in model.state_dict())
    assert "teacher" not in dict(model.named_children())


@pytest.mark.parametrize("cls, kwargs", [(LabelSmoothing, {}), (ConfidencePenalty, {}), (LastLayerDropout, {}),
                                         (SelfDistillation, "teacher")])
def test_fits_and_tests_on_digits(cls, kwargs, teacher_ckpt):
    kwargs = {"teacher_ckpt": teacher_ckpt} if kwargs == "teacher" else kwargs
    model = cls(**kwargs, **_digits_shape())
    trainer, dm = _fit(model, max_epochs=2)
    result = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert result["test/acc"] > 0.3


@pytest.mark.parametrize("name, cls", [("label_smoothing.yaml", LabelSmoothing),
                                       ("confidence_penalty.yaml", ConfidencePenalty),
                                       ("dropout.yaml", LastLayerDropout), ("distillation.yaml", SelfDistillation)])
def test_cli_accepts_the_configs(in_tmp, teacher_ckpt, name, cls):
    args = ["--config", QUICKSTART, "--config", str(REPO / "conf" / "defense" / name)]
    if cls is SelfDistillation:
        args += ["--model.init_args.teacher_ckpt", teacher_ckpt]
    assert isinstance(cli(args, run=False).model, cls)


def test_cli_distillation_config_runs_without_a_teacher(in_tmp):
    c = cli(["--config", QUICKSTART, "--config", str(REPO / "conf" / "defense" / "distillation.yaml")], run=False)
    assert isinstance(c.model, SelfDistillation) and c.model.hparams.teacher_ckpt is None
    assert c.model.hparams.T in (1, 2, 5, 10, 20, 50, 100)  # the paper's grid
