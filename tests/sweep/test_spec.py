"""Sweep files and grid expansion (no Ray, no fit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_privacy.errors import UserInputError
from lightning_privacy.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    for f in ("base.yaml", "a.yaml", "b.yaml"):
        (tmp_path / f).write_text("trainer:\n  max_epochs: 1\n")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_grid_is_the_product_of_its_axes_in_order(tmp_path):
    spec = load_sweep(write(tmp_path, {
        "base": "base.yaml", "set": {"trainer.max_epochs": 2},
        "grid": {"configs": {"defense": ["a.yaml", "b.yaml"]}, "values": {"model.init_args.r": [0.25, 0.5, 0.75]},
                 "seeds": [0, 1]}}))
    trials = spec.trials(["--data.root", "x"])
    assert len(trials) == 2 * 3 * 2
    assert len({t.name for t in trials}) == 12
    first = trials[0]
    assert first.axes == (("defense", "a"), ("model.init_args.r", 0.25), ("seed", 0))
    args = list(first.args)
    # files first (base, then the axis' file), then fixed values, then the axes' values, then extra args
    assert args[:4] == ["--config", str(tmp_path / "base.yaml"), "--config", str(tmp_path / "a.yaml")]
    assert args[4:] == ["--trainer.max_epochs=2", "--model.init_args.r=0.25", "--seed_everything=0", "--data.root", "x"]
    assert trials[1].axes[-1] == ("seed", 1)  # seeds vary fastest
    assert {t.axes[0][1] for t in trials[:6]} == {"a"}


def test_config_axis_choice_can_stack_files_and_seed_keys_are_configurable(tmp_path):
    spec = load_sweep(write(tmp_path, {"base": "base.yaml", "seed_keys": ["seed_everything", "data.init_args.seed"],
                                       "grid": {"configs": {"d": [["a.yaml", "b.yaml"]]}, "seeds": [3]}}))
    (trial,) = spec.trials()
    assert trial.args.count("--config") == 3 and trial.axes[0] == ("d", "a+b")
    assert "--seed_everything=3" in trial.args and "--data.init_args.seed=3" in trial.args


def test_values_are_written_as_tokens_jsonargparse_reads_back(tmp_path):
    spec = load_sweep(write(tmp_path, {"base": "base.yaml", "grid": {"values": {
        "model.init_args.dp": [{"target_epsilon": 1.0}], "model.init_args.net": ["x"]}}}))
    (trial,) = spec.trials()
    assert '--model.init_args.dp={"target_epsilon": 1.0}' in trial.args and "--model.init_args.net=x" in trial.args


def test_variant_merges_over_the_top_level(tmp_path):
    spec = load_sweep(write(tmp_path, {"base": "base.yaml", "set": {"trainer.max_epochs": 2, "a.b": 1},
                                       "grid": {"seeds": [0]},
                                       "variants": {"full": {"set": {"trainer.max_epochs": 100}, "grid": {"seeds": [0, 1, 2]}}}}),
                      variant="full")
    assert spec.set == {"trainer.max_epochs": 100, "a.b": 1} and spec.seeds == [0, 1, 2]


@pytest.mark.parametrize("data, message", [
    ({"base": "base.yaml", "grid": {}}, "the grid is empty"),
    ({"base": "base.yaml"}, "the grid is empty"),
    ({"base": "base.yaml", "grid": {"defenses": ["a.yaml"]}}, "unknown grid axis kind"),
    ({"base": "base.yaml", "grid": {"configs": {"d": ["missing.yaml"]}}}, "missing.yaml does not exist"),
    ({"base": "nope.yaml", "grid": {"seeds": [0]}}, "nope.yaml does not exist"),
    ({"grid": {"seeds": [0]}}, "names no base experiment"),
    ({"base": "base.yaml", "grid": {"values": {"model.init_args.r": []}}}, "non-empty list"),
    ({"base": "base.yaml", "grid": {"seeds": ["x"]}}, "must be integers"),
    ({"base": "base.yaml", "grid": {"seeds": [0]}, "resources": {"tpus": 1}}, "unknown resource"),
    ({"base": "base.yaml", "grid": {"seeds": [0]}, "bogus": 1}, "unknown key"),
])
def test_bad_sweep_files_are_one_clear_error(tmp_path, data, message):
    with pytest.raises(UserInputError, match=message):
        load_sweep(write(tmp_path, data))


def test_missing_sweep_file(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_sweep(tmp_path / "none.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "conf" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweep_files_load(path):
    spec = load_sweep(path)
    assert spec.trials()
    if "variants" in yaml.safe_load(path.read_text()):
        assert load_sweep(path, variant="full").trials()


def test_setting_is_the_axes_without_the_seed(tmp_path):
    spec = load_sweep(write(tmp_path, {"base": "base.yaml", "grid": {"configs": {"defense": ["a.yaml"]},
                                                                     "values": {"x.y": [1]}, "seeds": [0, 1]}}))
    assert {t.setting() for t in spec.trials()} == {"defense=a x.y=1"}


def test_error_line_finds_the_fit_failure_inside_rays_wrapping():
    from lightning_privacy.sweep.runner import error_line

    wrapped = RuntimeError("ray::ImplicitFunc.train() (pid=1)\n  File x\n    raise RuntimeError(f\"fit exited with "
                           "status {proc.returncode} (run {run_id}\")\nRuntimeError: fit exited with status 1 "
                           "(run abc; log l.log):\nValueError: Invalid learning rate: -1.0\n")
    assert error_line(wrapped).startswith("RuntimeError: fit exited with status 1 (run abc")
    assert error_line(RuntimeError("a\nb")) == "b"
