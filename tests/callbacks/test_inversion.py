"""The inversion audit (``audit.inversion``): both attacks after testing, its metrics, artifacts and bad input."""

import mlflow
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch import nn

from lightning_privacy.callbacks.inversion import InversionAudit, InversionAuditConfig, attacker_indices
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.errors import UserInputError
from tests.conftest import REPO

TINY = dict(layers=["features.0", "prediction"], decoder_epochs=1, eval_samples=40, steps=20, grid=2,
            evaluator_epochs=1, cache_dir=None)


def fit_and_test(config: InversionAuditConfig, **data):
    seed_everything(0)
    dm = Digits(**{"members": 200, "reference": 250, "test_fraction": 0.3, **data})
    model = ERM(num_classes=10, input_shape=dm.input_shape)
    audit = InversionAudit(config)
    trainer = Trainer(max_epochs=1, callbacks=[audit], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    return audit, dm


def test_the_audit_emits_both_attacks_metrics_and_grids(monkeypatch, tmp_path):
    seen = []
    images = InversionAudit._images
    monkeypatch.setattr(InversionAudit, "_images",
                        staticmethod(lambda dm, idx, device: seen.append(idx) or images(dm, idx, device)))
    audit, dm = fit_and_test(InversionAuditConfig(**TINY))
    members = dm.role_indices("members")
    # the decoder's training data (the first images gathered) is the reference role: never a member
    assert torch.equal(seen[0], dm.role_indices("reference")) and not torch.isin(seen[0], members).any()
    r = audit.last_result
    assert r.name == "inversion"
    m = r.metrics
    for point in ("features.0", "prediction", "blackbox"):
        for split in ("members", "nonmembers"):
            for name in ("mse", "psnr", "ssim"):
                assert f"inversion/decoder/{point}/{name}_{split}" in m
    assert m["inversion/decoder/whitebox_mse"] == min(m["inversion/decoder/features.0/mse_nonmembers"],
                                                      m["inversion/decoder/prediction/mse_nonmembers"])
    assert m["inversion/decoder/blackbox_mse"] == m["inversion/decoder/blackbox/mse_nonmembers"]
    per_class = [m[f"inversion/optimization/class_{k}/distance_l2"] for k in range(10)]
    assert m["inversion/optimization/distance_l2"] == pytest.approx(sum(per_class) / 10)
    assert 0 < m["inversion/optimization/distance_ssim"] <= 2 and m["inversion/optimization/restarts"] == 1
    assert m["time/inversion_decoder_s"] > 0 and m["time/inversion_optimization_s"] > 0
    assert 0 <= m["inversion/optimization/attack_acc"] <= 1 and 0 <= m["inversion/optimization/evaluator_acc"] <= 1
    assert set(r.artifacts) == {"inversion/decoder_grid.png", "inversion/decoder_scores.json",
                                "inversion/optimization_grid.png", "inversion/optimization.json"}
    grid = tmp_path / "grid.png"
    r.artifacts["inversion/decoder_grid.png"](grid)
    from PIL import Image

    width, height = Image.open(grid).size
    assert (width, height) == (4 * 9 + 1, 4 * 9 + 1)  # 4 columns (truth + 3 points) x 4 rows (2 per split), 8 px + 1
    assert r.headline().keys() == {"inversion/decoder/whitebox_mse", "inversion/decoder/blackbox_mse",
                                   "inversion/optimization/distance_l2"}


def test_helpers_run_on_rank_zero_only():
    audit = InversionAudit(InversionAuditConfig(**TINY))

    class Rank1:
        is_global_zero = False

    audit.on_test_end(Rank1(), None)
    assert audit.last_result is None


def test_the_decoder_role_must_be_disjoint_from_the_members():
    with pytest.raises(UserInputError, match="disjoint"):
        InversionAuditConfig(decoder_role="members")
    dm = Digits(members=200, reference=250)
    assert not torch.isin(attacker_indices(dm, "reference"), dm.role_indices("members")).any()
    with pytest.raises(UserInputError, match="empty"):
        attacker_indices(Digits(members=200), "reference")

    class Overlapping:
        def role_indices(self, role):
            return torch.arange(10) if role == "members" else torch.arange(5, 20)

    with pytest.raises(UserInputError, match="overlaps"):
        attacker_indices(Overlapping(), "shadow")


@pytest.mark.parametrize("kwargs,match", [
    ({"lam": -1.0}, "λ"), ({"btv_p": 0}, "p must"), ({"btv_alpha": 0.0}, "alpha"), ({"btv_alpha": 1.1}, "alpha"),
    ({"steps": 0}, "steps"), ({"attacks": ["gan"]}, "attacks"), ({"decoder_role": "train"}, "role"),
    ({"restarts": 0}, "restarts"), ({"eval_samples": 0}, "eval_samples"), ({"evaluator_role": "members"}, "disjoint"),
    ({"evaluator_epochs": 0}, "evaluator_epochs")])
def test_bad_settings_are_one_clear_error(kwargs, match):
    with pytest.raises(UserInputError, match=match):
        InversionAuditConfig(**kwargs)


def test_the_audit_runs_against_a_dp_sgd_model():
    from lightning_privacy.privacy.config import DPConfig

    seed_everything(0)
    dm = Digits(members=200, reference=250, test_fraction=0.3)
    model = ERM(num_classes=10, input_shape=dm.input_shape, dp=DPConfig(target_epsilon=4.0, delta=1e-5))
    audit = InversionAudit(InversionAuditConfig(**{**TINY, "steps": 5}))
    trainer = Trainer(max_epochs=1, callbacks=[audit], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert "inversion/decoder/features.0/mse_members" in audit.last_result.metrics
    assert "inversion/optimization/distance_l2" in audit.last_result.metrics


def _setup(model, config):
    dm = Digits(members=200, reference=250)
    trainer = Trainer(logger=False)
    trainer.datamodule = dm
    InversionAudit(config).setup(trainer, model, "fit")


def test_unknown_layers_and_networks_without_layers_fail_at_setup():
    model = ERM(num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(UserInputError, match=r"conv9.*features\.0"):
        _setup(model, InversionAuditConfig(layers=["conv9"]))
    with pytest.raises(UserInputError, match="named_layers"):
        _setup(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), InversionAuditConfig())
    _setup(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), InversionAuditConfig(attacks=["optimization"]))
    with pytest.raises(UserInputError, match="classes"):
        _setup(model, InversionAuditConfig(classes=[10]))


def test_the_inversion_config_runs_on_the_quickstart(in_tmp):
    from lightning_privacy.cli import main

    main(["fit", "--config", str(REPO / "conf/experiments/quickstart.yaml"),
          "--config", str(REPO / "conf/audit/inversion.yaml"), "--trainer.max_epochs", "1",
          "--audit.inversion.steps", "20", "--audit.inversion.decoder_epochs", "1", "--audit.inversion.decoder_width",
          "16", "--audit.inversion.evaluator_epochs", "1", "--audit.inversion.layers", "[features.0, prediction]",
          "--audit.inversion.eval_samples", "40",  # the experiment's membership audit, without the plots and
          "--audit.membership.artifacts", "false", "--audit.membership.bootstrap", "0"])  # intervals tested elsewhere
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    m = run.data.metrics
    for key in ("test/acc", "mia/loss/auc", "inversion/decoder/whitebox_mse", "inversion/decoder/blackbox_mse",
                "inversion/decoder/features.0/mse_members", "inversion/optimization/distance_l2",
                "inversion/optimization/distance_ssim"):
        assert key in m, key
    assert run.data.tags["inversion.decoder.best_layer"] in ("features.0", "prediction")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "inversion")}
    assert {"inversion/decoder_grid.png", "inversion/optimization_grid.png"} <= artifacts
    assert "inversion/optimization/attack_acc" in m and list((in_tmp / "outputs" / "evaluator").glob("*.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", [["inversion.yaml"], ["inversion.yaml", "inversion_btv.yaml"]])
def test_the_full_presets_run_on_the_quickstart(in_tmp, preset):
    from lightning_privacy.cli import main

    configs = [a for p in preset for a in ("--config", str(REPO / "conf/audit" / p))]
    main(["fit", "--config", str(REPO / "conf/experiments/quickstart.yaml"), *configs, "--trainer.max_epochs", "2"])


def test_the_faces_preset_stacks_on_the_mnist_preset(in_tmp):
    from lightning_privacy.cli import cli

    c = cli(["--config", str(REPO / "conf/experiments/quickstart.yaml"),
             "--config", str(REPO / "conf/audit/inversion.yaml"),
             "--config", str(REPO / "conf/audit/inversion_btv.yaml")], run=False)
    inv = c.config.audit.inversion
    assert (inv.prior, inv.btv_p, inv.btv_alpha, inv.lam, inv.steps, inv.lr) == ("btv", 2, 0.9, 0.001, 100, 0.05)
    assert inv.attacks == ["decoder", "optimization"] and inv.optimizer == "paper"  # kept from inversion.yaml
    assert c.config.audit.membership.attacks == ["loss", "confidence", "entropy", "m_entropy"]  # the experiment's
    mnist = cli(["--config", str(REPO / "conf/experiments/quickstart.yaml"),
                 "--config", str(REPO / "conf/audit/inversion.yaml")], run=False).config.audit.inversion
    assert (mnist.prior, mnist.steps, mnist.lr, mnist.lam) == ("l1", 5000, 0.1, 0.05)
