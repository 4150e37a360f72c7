"""What Ray Tune costs and buys: a sweep's trials run (a) as plain CLI fits one after another, (b) through
`lightning-privacy sweep --max-concurrent 1` and (c) `--max-concurrent 2`, each in a fresh folder (its own sqlite
store, so nothing is skipped), interleaved round by round in one invocation.

    .venv/bin/python benchmarks/sweep_overhead.py                      # conf/sweeps/quickstart_demo.yaml, 1 round
    .venv/bin/python benchmarks/sweep_overhead.py --rounds 2 --sweep conf/sweeps/quickstart_demo.yaml

Prints each mode's wall-clock seconds, the concurrency ratio (c) ÷ (b) (the ideal on 2 free cores is 0.5) and
Ray's overhead per trial ((b) − (a)) ÷ N.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lightning_privacy.sweep.spec import load_sweep  # noqa: E402


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def plain(sweep: Path) -> float:
    """The same trials as `fit` commands one after another (what a user would type without Ray)."""
    trials = load_sweep(sweep).trials()
    with tempfile.TemporaryDirectory(prefix="plain-") as tmp:
        return sum(timed([sys.executable, "-m", "lightning_privacy.cli", "fit", *t.args], Path(tmp)) for t in trials)


def swept(sweep: Path, concurrent: int) -> float:
    with tempfile.TemporaryDirectory(prefix=f"sweep{concurrent}-") as tmp:
        return timed([sys.executable, "-m", "lightning_privacy.cli", "sweep", "--config", str(sweep.resolve()),
                      "--max-concurrent", str(concurrent)], Path(tmp))


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, default=REPO / "conf" / "sweeps" / "quickstart_demo.yaml")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    n = len(load_sweep(args.sweep).trials())
    walls: dict[str, list[float]] = {"plain": [], "sweep1": [], "sweep2": []}
    for r in range(args.rounds):
        walls["plain"].append(plain(args.sweep))
        walls["sweep1"].append(swept(args.sweep, 1))
        walls["sweep2"].append(swept(args.sweep, 2))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in walls.items()), flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"\n{n} trials of {args.sweep.name}, medians over {args.rounds} round(s):")
    print("| mode | wall s |\n|---|---|")
    for k, label in (("plain", "plain `fit` one after another"), ("sweep1", "sweep, 1 trial at a time"),
                     ("sweep2", "sweep, 2 trials at a time")):
        print(f"| {label} | {med[k]:.1f} |")
    print(f"\nconcurrency ratio (2 at a time ÷ 1 at a time): {med['sweep2'] / med['sweep1']:.2f} (ideal 0.5)")
    print(f"Ray overhead per trial ((sweep, 1 at a time − plain) ÷ {n}): {(med['sweep1'] - med['plain']) / n:.1f} s")


if __name__ == "__main__":
    main_()
