"""Every GAN config fits on tiny data through the CLI and the GAN membership audit lands in the run."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from lightning_privacy.callbacks.gan_membership import GanMembershipAuditConfig
from lightning_privacy.cli import main
from lightning_privacy.errors import UserInputError
from tests.conftest import REPO

QUICKSTART = REPO / "conf" / "experiments" / "quickstart_gan.yaml"
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--data.init_args.image_size", "16",
        "--data.init_args.members", "64", "--data.init_args.reference", "24", "--data.init_args.batch_size", "16",
        "--audit.gan_membership.mc_generated", "200", "--audit.gan_membership.mc_samples", "10",
        "--audit.gan_membership.mc_repeats", "2", "--audit.gan_membership.bootstrap", "0",
        "--audit.gan_fidelity.samples", "60", "--audit.gan_fidelity.downstream_samples", "60",
        "--audit.gan_fidelity.classifier_epochs", "1", "--audit.gan_fidelity.downstream_epochs", "1",
        "--audit.gan_fidelity.is_splits", "2"]


@pytest.mark.parametrize("defense,extra", [
    ("gan", []),
    ("pigan", ["--model.init_args.warmup_epochs", "0", "--model.init_args.q_pretrain_epochs", "1"]),
    ("privgan", ["--model.init_args.warmup_epochs", "0", "--model.init_args.q_pretrain_epochs", "1"]),
    ("dpgan", []),
])
def test_gan_config_fits_and_audits(in_tmp: Path, defense: str, extra: list[str]) -> None:
    main(["fit", "--config", str(QUICKSTART), "--config", str(REPO / "conf" / "defense" / f"{defense}.yaml"),
          *TINY, *extra])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    for key in ("gan_mia/wb/acc", "gan_mia/wb/auc", "gan_mia/tvd", "gan_mia/mc_single/acc", "gan_mia/mc_single/acc_std",
                "gan_mia/mc_set/acc", "gan_mia/mc_set/acc_std", "gan_mia/mc_set/auc"):
        assert key in m, key
    assert "test/acc" not in m
    for key in ("gan/fid_domain", "gan/is_domain", "gan/downstream_acc"):
        assert key in m, key
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "audit")]
    assert "audit/gan_samples.png" in artifacts
    assert ("audit/gan_samples_code_1.png" in artifacts) == (defense in ("pigan", "privgan"))
    assert ("gan_mia/wb_mean/acc" in m) == (defense in ("pigan", "privgan"))  # max and mean over the codes or discriminators
    assert ("time/q_pretrain_s" in m) == (defense in ("pigan", "privgan"))  # Q's pre-training, timed
    assert run.data.tags["audit.weights"] == "last"
    assert m["gan_mia/n_members"] == 64
    assert m["gan_mia/wb/chance"] == pytest.approx(64 / (64 + m["gan_mia/n_holdout"]))
    if defense == "dpgan":
        assert m["dp/epsilon"] > 0 and m["dp/steps"] >= 1


def test_audit_config_refuses_unknown_attacks() -> None:
    with pytest.raises(UserInputError, match="attacks"):
        GanMembershipAuditConfig(attacks=("wb", "lira"))


def test_mc_without_a_pca_role_is_refused(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(QUICKSTART), *TINY, "--data.init_args.reference", "0"])
    assert exc.value.code == 2
    assert "PCA on the 'reference' role" in capsys.readouterr().err


def test_images_the_architecture_cannot_produce_name_the_resize(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(QUICKSTART), *TINY, "--data.init_args.image_size", "8"])
    assert exc.value.code == 2
    assert "data.init_args.image_size" in capsys.readouterr().err


def test_dp_stacked_on_pigan_is_refused_by_name(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(QUICKSTART), "--config", str(REPO / "conf" / "defense" / "pigan.yaml"),
              "--config", str(REPO / "conf" / "defense" / "with_dp.yaml"), *TINY,
              "--model.init_args.dp.module", "generator"])
    assert exc.value.code == 2
    assert "PIGAN cannot be trained with DP-SGD (dp.module 'generator')" in capsys.readouterr().err
