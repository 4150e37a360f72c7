"""Help that helps (issue 15.3)."""

import subprocess
import sys

import pytest

from lightning_privacy.callbacks.registry import AUDITS
from tests.conftest import REPO


def _help(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "lightning_privacy.cli", *args, "--help"], capture_output=True,
                         text=True, cwd=REPO, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                                                "COLUMNS": "120"})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def main_help() -> str:
    return _help()


def test_help_describes_the_tool_and_lists_every_choice_one_line_each(main_help):
    assert "Lightning Trainer command line tool" not in main_help and "membership privacy" in main_help
    lines = main_help.splitlines()
    for folder in ("defense", "data", "audit"):
        for path in sorted((REPO / "conf" / folder).glob("*.yaml")):
            # a preset may share its name with an audit kind (inversion): each of its lines has a description
            found = [ln for ln in lines if ln.split()[:1] == [path.stem]]
            assert found and all(len(ln.split()) > 1 for ln in found), (path, found)
    for name in AUDITS:
        assert any(ln.split()[:1] == [name] for ln in lines), name
    assert "predict" not in main_help


def test_fit_help_lists_the_choices_and_documents_the_project_options():
    text = _help("fit")
    assert "dpsgd" in text and "fashion_mnist" in text
    flat = " ".join(text.split())
    for option in ("--tracking.uri URI MLflow tracking URI", "--tracking.experiment EXPERIMENT MLflow experiment",
                   "--tracking.run_name RUN_NAME name shown", "--tracking.enabled {true,false} false = log nothing",
                   "--tracking.run_id RUN_ID log into this existing run", "--compose COMPOSE, --compose+ COMPOSE Config"):
        assert option in flat, option
