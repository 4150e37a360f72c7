"""Fashion-MNIST defenses through the CLI, one after another, figures beside the DAP paper's FMNIST row.

    .venv/bin/python benchmarks/fmnist_defenses.py --epochs 10                        # ERM and Reg
    .venv/bin/python benchmarks/fmnist_defenses.py --epochs 3 --defenses erm dap_t relaxloss
    .venv/bin/python benchmarks/fmnist_defenses.py --full                             # the paper's protocol (GPU)
    .venv/bin/python benchmarks/fmnist_defenses.py --epochs 2 --defenses erm dap_t \
        "dap_t@stale_features_approximation=true"                                     # DAP's two step-2 orders
    .venv/bin/python benchmarks/fmnist_defenses.py --members 2000 --epochs 15 --defenses erm "dap_t@r=0.1" \
        "dap_t@r=0.5"                                                                 # an r sweep, small budget

A defense may carry model overrides after ``@``: ``dap_t@r=0.25,stale_features_approximation=true`` runs
conf/defense/dap_t.yaml with ``--model.init_args.r 0.25 --model.init_args.stale_features_approximation true``.

Each run is `lightning-privacy fit --config conf/experiments/fmnist_baseline.yaml --config
conf/defense/<defense>.yaml` logged to ./mlruns (experiment "benchmarks"). The script prints test accuracy,
the best attack's AUC, AOP(2), the median epoch time, each defense's epoch-time ratio to the first one
(measured in this same run) and the whole fit's wall time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import REPO, epoch_times, fit_run, median_epoch_s  # noqa: E402

# DAP paper, Tables 1-3, FMNIST (accuracy, best TF Privacy attack AUC, AOP(2))
PAPER = {"erm": (0.932, 0.552, 0.765), "reg": (0.926, 0.562, 0.733), "dap_t": (0.866, 0.507, 0.842),
         "dap_v": (0.871, 0.506, 0.850)}


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--defenses", nargs="+", default=["erm", "reg"], help="names of conf/defense/*.yaml")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit-train-batches", type=float, default=1.0)
    parser.add_argument("--full", action="store_true", help="early stopping with patience 25, no epoch cap")
    parser.add_argument("--members", type=float, default=None, help="data.init_args.members (default: the split's)")
    parser.add_argument("--nonmembers", type=float, default=None, help="data.init_args.nonmembers")
    args = parser.parse_args()
    extra = ["--data.root", args.data_root]
    for role in ("members", "nonmembers"):
        size = getattr(args, role)
        if size is not None:
            extra += [f"--data.init_args.{role}", str(int(size) if size >= 1 else size)]
    if not args.full:
        extra += ["--trainer.max_epochs", str(args.epochs), "--trainer.limit_train_batches",
                  str(args.limit_train_batches)]
    rows = {}
    for defense in args.defenses:
        name, _, overrides = defense.partition("@")
        model_args = [arg for item in filter(None, overrides.split(","))
                      for arg in (f"--model.init_args.{item.partition('=')[0]}", item.partition("=")[2])]
        r, wall = fit_run(f"bench-fmnist-{defense}", [
            "--config", str(REPO / "conf" / "experiments" / "fmnist_baseline.yaml"),
            "--config", str(REPO / "conf" / "defense" / f"{name}.yaml"), *extra, *model_args])
        rows[defense] = (r.data.metrics, median_epoch_s(r), len(epoch_times(r)), wall, r.info.run_id)
    first = args.defenses[0]
    print(f"\n{'defense':40} {'epochs':>6} {'acc':>6} {'best AUC':>8} {'AOP(2)':>7} {'median epoch s':>14} "
          f"{'x ' + first:>8} {'fit wall s':>10}   paper (acc, AUC, AOP)")
    for defense, (m, epoch_s, n, wall, run_id) in rows.items():
        print(f"{defense:40} {n:6d} {m['test/acc']:6.3f} {m['mia/best/auc']:8.3f} {m['privacy/aop_lambda_2']:7.3f} "
              f"{epoch_s:14.1f} {epoch_s / rows[first][1]:8.2f} {wall:10.0f}   {PAPER.get(defense.partition('@')[0], '-')}  run {run_id}")


if __name__ == "__main__":
    main_()
