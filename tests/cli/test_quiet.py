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
