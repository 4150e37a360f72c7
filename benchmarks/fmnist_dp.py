"""DP-SGD on real Fashion-MNIST through the CLI, beside the DAP paper's FMNIST DP row, with the one-run ε audit.

    .venv/bin/python benchmarks/fmnist_dp.py --epochs 2                       # budgeted (CPU): ERM, then ε grid
    .venv/bin/python benchmarks/fmnist_dp.py --epsilons 2 4 8 --epochs 3     # the DP-vs-regularization grid
    .venv/bin/python benchmarks/fmnist_dp.py --full                          # DAP protocol to the target (GPU)

Budgeted protocol (default): every model trains ``--epochs`` epochs; DP runs solve the noise multiplier for
(ε, δ = 1e-5, those epochs, q = 32 / members) — the DP-vs-regularization paper's protocol. ``--full`` is the
DAP paper's: fixed noise (``--noise``), training stops at the epoch where ε would exceed the target (cap 500).
Every run: `lightning-privacy fit --config conf/experiments/fmnist_baseline.yaml [--config conf/defense/dpsgd.yaml]
--config conf/audit/epsilon_audit.yaml` with ``--canaries`` canaries, logged to ./mlruns (experiment
"benchmarks"). Printed: test accuracy, best black-box attack AUC, AOP(2), dp/epsilon, dp/epsilon_lb, the median
epoch time and its ratio to the ERM epoch measured in this same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import mlflow

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lightning_privacy.cli import main  # noqa: E402
from lightning_privacy.tracking.mlflow import default_tracking_uri  # noqa: E402

# DAP paper, Tables 1-3, FMNIST: accuracy and best attack AUC per ε (AOP(2) follows from them)
PAPER = {0.5: (0.605, 0.502), 1.0: (0.701, 0.502), 2.0: (0.736, 0.504), 4.0: (0.774, 0.505), None: (0.932, 0.552)}


def run(name: str, extra: list[str]) -> tuple[mlflow.entities.Run, float]:
    start = time.perf_counter()
    main(["fit", "--config", str(REPO / "conf" / "experiments" / "fmnist_baseline.yaml"), *extra,
          "--tracking.experiment", "benchmarks", "--tracking.run_name", name])
    wall = time.perf_counter() - start
    client = mlflow.MlflowClient(default_tracking_uri())
    exp = client.get_experiment_by_name("benchmarks")
    latest = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    return latest, wall


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--canaries", type=int, default=1000, help="one-run audit canaries among the members")
    parser.add_argument("--full", action="store_true", help="fixed noise, train until the target ε (DAP protocol)")
    parser.add_argument("--noise", type=float, default=1.0, help="noise multiplier of --full")
    parser.add_argument("--skip-erm", action="store_true")
    args = parser.parse_args()
    audit = ["--config", str(REPO / "conf" / "audit" / "epsilon_audit.yaml"),
             "--audit.epsilon.canaries", str(args.canaries)]
    common = ["--data.root", args.data_root, "--trainer.max_epochs", str(500 if args.full else args.epochs)]
    client = mlflow.MlflowClient(default_tracking_uri())
    rows: dict = {}
    budget: list[str] = []  # whole epochs: the noise is solved for them (a batch limit would leave ε short)
    if not args.skip_erm:
        r, wall = run("bench-fmnist-dp-erm", [*budget, *audit, *common, "--config", str(REPO / "conf/defense/erm.yaml")])
        rows[None] = (r, wall)
    for eps in args.epsilons:
        dp = ["--config", str(REPO / "conf" / "defense" / "dpsgd.yaml"), "--model.init_args.dp.target_epsilon", str(eps)]
        if args.full:
            dp += ["--model.init_args.dp.noise_multiplier", str(args.noise)]
        r, wall = run(f"bench-fmnist-dp-eps{eps:g}", [*budget, *audit, *common, *dp])
        rows[eps] = (r, wall)

    def epoch_s(r) -> float:
        return statistics.median(m.value for m in client.get_metric_history(r.info.run_id, "time/epoch_s"))

    base = epoch_s(rows[None][0]) if None in rows else float("nan")
    print(f"\n{'model':10} {'epochs':>6} {'acc':>6} {'bb AUC':>7} {'AOP(2)':>7} {'eps':>6} {'eps_lb':>7} "
          f"{'epoch s':>8} {'x ERM':>6}   paper (acc, AUC)")
    for eps, (r, wall) in rows.items():
        m = r.data.metrics
        n = len(client.get_metric_history(r.info.run_id, "time/epoch_s"))
        e = epoch_s(r)
        print(f"{'ERM' if eps is None else f'eps={eps:g}':10} {n:6d} {m['test/acc']:6.3f} "
              f"{m.get('mia/best_blackbox/auc', float('nan')):7.3f} {m.get('privacy/aop_lambda_2_blackbox', float('nan')):7.3f} "
              f"{m.get('dp/epsilon', float('nan')):6.2f} {m.get('dp/epsilon_lb', float('nan')):7.2f} {e:8.1f} "
              f"{e / base:6.2f}   {PAPER.get(eps, '-')}  run {r.info.run_id}")


if __name__ == "__main__":
    main_()
