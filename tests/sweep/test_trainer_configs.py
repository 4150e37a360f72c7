"""The DDP trainer files resolve with --print_config (item 4 of the platform issue)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_privacy.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, nodes", [("ddp", 1), ("ddp_multinode", 2)])
def test_ddp_trainer_files_resolve(name, nodes, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "conf" / "experiments" / "quickstart.yaml"),
              "--config", str(REPO / "conf" / "trainer" / f"{name}.yaml"), "--print_config"])
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert trainer["strategy"] == "ddp" and trainer["num_nodes"] == nodes and trainer["devices"] == -1


@pytest.mark.parametrize("run_name, defense, expected", [
    ("quickstart", "ERM", "quickstart ERM"), ("quickstart", "Reg", "quickstart Reg"),
    ("fmnist-dap-t-r0.25", "DAP", "fmnist-dap-t-r0.25"), (None, "RelaxLoss", "exp RelaxLoss"),
    ("demo defense=relaxloss seed=0", "RelaxLoss", "demo defense=relaxloss seed=0"), ("x", "", "x")])
def test_default_run_name_says_the_defense(run_name, defense, expected):
    from lightning_privacy.tracking.mlflow import TrackingConfig, default_run_name

    assert default_run_name(TrackingConfig(run_name=run_name, experiment="exp"), {"defense": defense}) == expected
