"""A quickstart's output holds no warning a user cannot act on (issue 15.8)."""

import subprocess
import sys

from tests.conftest import REPO

UNACTIONABLE = ("litlogger", "log_every_n_steps", "but have no `val_dataloader`", "LeafSpec", "No seed found")


def test_a_quickstart_prints_no_unactionable_warning(tmp_path):
    cmd = [sys.executable, "-m", "lightning_privacy.cli", "fit",
           "--config", str(REPO / "conf" / "experiments" / "quickstart.yaml"),
           "--config", str(REPO / "conf" / "audit" / "mia_full.yaml"),  # helper (shadow, reference) fits too
           "--trainer.max_epochs", "2", "--audit.membership.shadow_epochs", "1", "--audit.membership.bootstrap", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "mia/best/auc" in text
    for phrase in UNACTIONABLE:
        assert phrase not in text, phrase
    # each long phase of the audit leaves one line (once: not repeated by a root handler a library installs)
    for phase in ("audit: trained 8 of 8 helper models (4 shadow, 4 reference)", "audit: collected signals of 9 models",
                  "audit: per-sample gradients of 5 models", "audit: bootstrap 2 resamples"):
        assert out.stderr.count(phase) == 1, (phase, out.stderr[-3000:])


def test_the_progress_bar_switch_is_accepted_and_turns_the_bar_off(in_tmp):
    """``--trainer.enable_progress_bar false`` (the switch the audits' bars follow too) used to fail: Lightning
    refuses the CLI's default RichProgressBar with the flag off."""
    from lightning.pytorch.callbacks import RichProgressBar

    from lightning_privacy.cli import cli

    args = ["--config", str(REPO / "conf" / "experiments" / "quickstart.yaml"), "--tracking.enabled", "false"]
    assert cli([*args, "--trainer.enable_progress_bar", "false"], run=False).trainer.progress_bar_callback is None
    assert isinstance(cli(args, run=False).trainer.progress_bar_callback, RichProgressBar)
