"""The papers' ε grids on Fashion-MNIST as experiments: each composes and sets its budget mode."""

import pytest

from lightning_privacy.cli import cli
from tests.conftest import REPO

SWEEPS = REPO / "conf" / "experiments" / "sweeps"


@pytest.mark.parametrize("eps", ["0.5", "1", "2", "4"])
def test_dap_protocol_fixes_the_noise_and_stops_at_the_target(in_tmp, eps):
    c = cli(["--config", str(SWEEPS / "dp_epsilon_dap" / f"eps_{eps}.yaml")], run=False)
    dp = c.model.dp
    assert dp.mode == "stop_at_target" and dp.target_epsilon == float(eps) and dp.delta == 1e-5
    assert c.datamodule.dataset_name == "fashion_mnist"


@pytest.mark.parametrize("eps", ["2", "4", "8"])
def test_dp_vs_regularization_protocol_solves_the_noise_for_fixed_epochs(in_tmp, eps):
    c = cli(["--config", str(SWEEPS / "dp_epsilon_dpreg" / f"eps_{eps}.yaml")], run=False)
    assert c.model.dp.mode == "target_epsilon" and c.model.dp.target_epsilon == float(eps)
    assert c.trainer.max_epochs == 30 and c.datamodule.batch_size == 200
