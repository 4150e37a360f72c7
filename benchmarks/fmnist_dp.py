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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import REPO, epoch_times, fit_run, median_epoch_s  # noqa: E402

# DAP paper, Tables 1-3, FMNIST: accuracy and best attack AUC per ε (AOP(2) follows from them)
PAPER = {0.5: (0.605, 0.502), 1.0: (0.701, 0.502), 2.0: (0.736, 0.504), 4.0: (0.774, 0.505), None: (0.932, 0.552)}
BASELINE = str(REPO / "conf" / "experiments" / "fmnist_baseline.yaml")


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
    rows: dict = {}
    # whole epochs, no batch limit: the noise is solved for them (a limit would leave ε short of the target)
    if not args.skip_erm:
        rows[None] = fit_run("bench-fmnist-dp-erm", ["--config", BASELINE, *audit, *common,
                                                     "--config", str(REPO / "conf/defense/erm.yaml")])
    for eps in args.epsilons:
        dp = ["--config", str(REPO / "conf" / "defense" / "dpsgd.yaml"), "--model.init_args.dp.target_epsilon", str(eps)]
        if args.full:
            dp += ["--model.init_args.dp.noise_multiplier", str(args.noise)]
        rows[eps] = fit_run(f"bench-fmnist-dp-eps{eps:g}", ["--config", BASELINE, *audit, *common, *dp])

    base = median_epoch_s(rows[None][0]) if None in rows else float("nan")
    print(f"\n{'model':10} {'epochs':>6} {'acc':>6} {'bb AUC':>7} {'AOP(2)':>7} {'eps':>6} {'eps_lb':>7} "
          f"{'epoch s':>8} {'x ERM':>6}   paper (acc, AUC)")
    for eps, (r, wall) in rows.items():
        m = r.data.metrics
        n, e = len(epoch_times(r)), median_epoch_s(r)
        print(f"{'ERM' if eps is None else f'eps={eps:g}':10} {n:6d} {m['test/acc']:6.3f} "
              f"{m.get('mia/best_blackbox/auc', float('nan')):7.3f} {m.get('privacy/aop_lambda_2_blackbox', float('nan')):7.3f} "
              f"{m.get('dp/epsilon', float('nan')):6.2f} {m.get('dp/epsilon_lb', float('nan')):7.2f} {e:8.1f} "
              f"{e / base:6.2f}   {PAPER.get(eps, '-')}  run {r.info.run_id}")


if __name__ == "__main__":
    main_()
