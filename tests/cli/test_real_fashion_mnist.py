"""The foundation's acceptance run on real Fashion-MNIST: skips where ../shared/data is absent."""

import mlflow
import pytest

from lightning_privacy.cli import main
from tests.conftest import REPO

SHARED = REPO.parent / "shared" / "data"


@pytest.mark.slow  # about 2 minutes: a real epoch and the audit of 54,000 members
@pytest.mark.skipif(not (SHARED / "FashionMNIST" / "raw").is_dir(), reason="../shared/data/FashionMNIST is absent")
def test_short_fmnist_baseline_reaches_075(in_tmp):
    main(["fit", "--config", str(REPO / "conf" / "experiments" / "fmnist_baseline.yaml"),
          "--data.root", str(SHARED), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "300"])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    m = run.data.metrics
    assert m["test/acc"] >= 0.75
    assert m["mia/n_members"] == 54000 and m["mia/n_nonmembers"] == 10000
    for key in ("mia/loss/auc", "mia/best/auc", "privacy/aop_lambda_2", "time/epoch_s"):
        assert key in m
    assert run.data.tags["dataset"] == "fashion_mnist"
