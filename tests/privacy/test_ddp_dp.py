"""DP-SGD's private gradient goes through Lightning's DDP all-reduce: ranks noise separately, weights stay equal."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_ranks_keep_equal_weights_under_dp_sgd(tmp_path):
    out = tmp_path / "gap.txt"
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("ddp_dp_worker.py")), str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    gap, moved = map(float, out.read_text().split())
    assert gap == 0.0 and moved > 0.0
