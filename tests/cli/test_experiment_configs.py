"""Every experiment under conf/experiments/ resolves and fits for a couple of batches (on tiny fake data in each
dataset's real format), so a broken experiment file is caught."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from lightning_privacy.cli import main
from tests.conftest import REPO
from tests.data.fakes import write_mnist_like

EXPERIMENTS = sorted((REPO / "conf" / "experiments").rglob("*.yaml"))
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
         "--trainer.limit_test_batches", "2"]
# generative experiments: their audits at CPU-test sizes (fmnist_gan asks for the paper's 10^5 MC samples)
GAN_SHORT = ["--audit.gan_membership.mc_generated", "500", "--audit.gan_membership.mc_repeats", "2",
             "--audit.gan_membership.bootstrap", "0", "--audit.gan_fidelity.samples", "200",
             "--audit.gan_fidelity.downstream_samples", "200", "--audit.gan_fidelity.classifier_epochs", "1",
             "--audit.gan_fidelity.downstream_epochs", "1"]


def _fake_root(tmp: Path, n_train: int) -> Path:
    root = tmp / "data"
    for name in ("FashionMNIST", "MNIST"):
        write_mnist_like(root / name / "raw", n_train=n_train, n_test=400, gz=False, seed=1)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=[str(p.relative_to(REPO / "conf" / "experiments"))
                                                         for p in EXPERIMENTS])
def test_experiment_fits_a_couple_of_batches(in_tmp: Path, experiment: Path) -> None:
    # DP experiments fix the noise for the real data set's sampling rate: give them its size of training part;
    # the leaky GAN experiment's roles are counts that need 10 816 images.
    n_train = 60000 if "dp_" in experiment.parent.name else 14000 if experiment.stem == "fmnist_gan_leaky" else 2400
    root = _fake_root(in_tmp, n_train)
    short = [*SHORT, *GAN_SHORT] if "gan" in experiment.stem else SHORT
    main(["fit", "--config", str(experiment), *short, "--data.init_args.root", str(root)])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    # a generative fit has no classifier test: its audit is the GAN membership audit
    assert ("gan_mia/wb/acc" if "gan" in experiment.stem else "test/acc") in run.data.metrics
