"""The class-DP paper's Fig. 6 / Table I on real MNIST: the optimization inversion attack (Algorithm 1, the paper's
MNIST preset: ℓ1, λ 0.05, η 0.1, the change of variable, the paper's update, w₀ = 0) against a vanilla model,
record-DP and subclass-DP models, each one `lightning-privacy fit` through the CLI with `audit.inversion`
(`attacks: [optimization]`), logged to ./mlruns (experiment "benchmarks").

    .venv/bin/python benchmarks/class_dp_inversion.py                        # the CPU budget (see RESULTS.md)
    .venv/bin/python benchmarks/class_dp_inversion.py --record-sigmas 0.65 --subclass-sigmas 0.3 --steps 500
    .venv/bin/python benchmarks/class_dp_inversion.py --full                 # the paper's protocol (GPU)

Targets: the class-DP paper's CNN (conf/net/class_dp_cnn.yaml: two 5×5 conv and two dense layers), Adam (--lr,
0.01 by default: the paper gives none), batch 200, the same epochs for all. Record-DP: conf/defense/dpsgd.yaml with a fixed noise multiplier σ (C 1,
δ 1e-5; ε reported). Subclass-DP: conf/defense/subclass_dp.yaml with `subclass_source: members` (the paper's
k-means on the members' own pixels, k = 50 per class), q = 0.2, S = 3.0, δ 1e-3, a fixed σ. The paper picks σ so
that each record-DP model has a subclass-DP partner of equal test accuracy (96/93/91 %); the script pairs each
record-DP model with the subclass-DP model of nearest accuracy and prints the gap.

Prints per model the MIA distance per class and averaged (ℓ2 and 1 − SSIM: the minimum over the class's members),
the attack accuracy (an evaluation CNN trained on the `reference` role), f_label of the reconstructions, test
accuracy, ε and the run ids; the paper's Table I (enhanced MIA on its vanilla model) beside; --json writes all.
Each extra ℓ1 weight of --lams re-audits the same checkpoint (`lightning-privacy test --ckpt_path`, a run of its
own): at the paper's λ = 0.05 (ℓ1 summed over the 784 pixels, eq. 4) a pixel only brightens where ∂f_label/∂x exceeds
λ, so a model with small input gradients yields a black image whatever its training.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import REPO, fit_run, role_args  # noqa: E402

# Table I, "Enhanced MIA" (ℓ1, change of variable) on the paper's vanilla MNIST model: MIA distance (ℓ2) per digit.
PAPER_TABLE_I = [5.93, 7.89, 8.51, 7.92, 8.2, 8.41, 8.51, 7.76, 8.06, 8.76]
# Sec. V: σ and (test accuracy, ε) of the paper's record-DP (δ 1e-5) and subclass-DP (δ 1e-3) models.
PAPER_RECORD = {0.65: (0.96, 6.0), 1.0: (0.93, 1.6), 1.8: (0.91, 0.5)}
PAPER_SUBCLASS = {1.6: (0.96, 18.6), 3.0: (0.93, 8.2), 3.65: (0.91, 7.0)}


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--nonmembers", type=int, default=1000)
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--reference", type=int, default=1000, help="the evaluation classifier's data")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.01,
                        help="Adam's learning rate for every model (the DP models take few steps on the CPU budget)")
    parser.add_argument("--record-sigmas", type=float, nargs="*", default=[0.65, 1.8])
    parser.add_argument("--subclass-sigmas", type=float, nargs="*", default=[0.2, 0.5])
    parser.add_argument("--no-vanilla", action="store_true")
    parser.add_argument("--steps", type=int, default=600, help="Algorithm 1's T (the paper's: 5000)")
    parser.add_argument("--lams", type=float, nargs="+", default=[0.05, 0.005],
                        help="ℓ1 weights λ: the first in the fit's audit (the paper's 0.05), each other one by "
                             "re-auditing the same checkpoint (`lightning-privacy test --ckpt_path`)")
    parser.add_argument("--evaluator-epochs", type=int, default=3)
    parser.add_argument("--full", action="store_true",
                        help="the paper's sizes: all official train images but 6,000 validation and 10,000 "
                             "reference as members, the official test set, 30 epochs, T = 5000, σ as the paper's "
                             "(record 0.65/1.0/1.8, subclass 1.6/3.0/3.65), evaluator 10 epochs")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args()
    if args.full:
        args.members, args.nonmembers, args.validation, args.reference = None, None, 6000, 10000
        args.epochs, args.steps, args.evaluator_epochs = 30, 5000, 10
        args.record_sigmas, args.subclass_sigmas = sorted(PAPER_RECORD), sorted(PAPER_SUBCLASS)
    data_args = role_args(args)
    audit_args = ["--audit.inversion.attacks", "[optimization]", "--audit.inversion.steps", str(args.steps),
                  "--audit.inversion.evaluator_epochs", str(args.evaluator_epochs)]
    lam_args = lambda lam: ["--audit.inversion.lam", str(lam)]  # noqa: E731
    # fixed-noise mode: target_epsilon null (a YAML null; jsonargparse refuses `--model.init_args.dp.target_epsilon
    # null` on the command line for this nested Optional field)
    fixed_noise = Path(tempfile.mkdtemp()) / "fixed_noise.yaml"
    fixed_noise.write_text("model:\n  init_args:\n    dp:\n      target_epsilon: null\n")
    targets: list[tuple[str, str, list[str]]] = [] if args.no_vanilla else [("vanilla", "erm", [])]
    targets += [(f"record_sigma{s:g}", "dpsgd", ["--config", str(fixed_noise),
                                                 "--model.init_args.dp.noise_multiplier", str(s),
                                                 "--model.init_args.dp.seed", "0"]) for s in args.record_sigmas]
    targets += [(f"subclass_sigma{s:g}", "subclass_dp", ["--config", str(fixed_noise),
                                                         "--model.init_args.dp.noise_multiplier", str(s),
                                                         "--model.init_args.dp.subclass_source", "members",
                                                         "--model.init_args.dp.seed", "0"])
                for s in args.subclass_sigmas]
    print(f"budget: members {args.members}, non-members {args.nonmembers}, reference {args.reference}, "
          f"{args.epochs} epochs at batch {args.batch_size}; Algorithm 1 with T = {args.steps}; evaluator "
          f"{args.evaluator_epochs} epochs", flush=True)
    start_all = time.perf_counter()
    results: dict[float, dict[str, dict]] = {lam: {} for lam in args.lams}
    for name, defense, overrides in targets:
        cli_args = ["--config", str(REPO / "conf" / "data" / "mnist.yaml"),
                    "--config", str(REPO / "conf" / "defense" / f"{defense}.yaml"),
                    "--config", str(REPO / "conf" / "net" / "class_dp_cnn.yaml"),
                    "--config", str(REPO / "conf" / "trainer" / "default.yaml"),
                    "--config", str(REPO / "conf" / "audit" / "inversion.yaml"),
                    *data_args, "--trainer.max_epochs", str(args.epochs), "--model.init_args.lr", str(args.lr),
                    *overrides, *audit_args]
        fit, wall = fit_run(f"bench-classdp-inversion-{name}", [*cli_args, *lam_args(args.lams[0])])
        (ckpt,) = Path("outputs").glob(f"*/{fit.info.run_id}/checkpoints/best-*.ckpt")
        for lam in args.lams:
            run, lam_wall = (fit, wall) if lam == args.lams[0] else fit_run(
                f"bench-classdp-inversion-{name}-lam{lam:g}", [*cli_args, *lam_args(lam), "--ckpt_path", str(ckpt)],
                command="test")
            results[lam][name] = row(run, lam_wall, fit)
            print(f"[{name} λ {lam:g}] acc {results[lam][name]['test_acc']:.4f} MIA distance "
                  f"{results[lam][name]['distance_l2']:.3f} wall {lam_wall:.0f}s run {run.info.run_id}", flush=True)
    total = time.perf_counter() - start_all
    for lam in args.lams:
        print(f"\n===== λ = {lam:g} =====")
        report(results[lam])
    print(f"\ntotal wall time {total:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "total_wall_s": total,
                                               "results": {str(lam): r for lam, r in results.items()}},
                                              indent=2))


def row(run, wall: float, fit) -> dict:
    """The figures of an audit run (``fit``: the run that trained the weights, for ε and σ)."""
    m, f = run.data.metrics, fit.data.metrics
    key = "inversion/optimization"
    return {"run_id": run.info.run_id, "fit_run_id": fit.info.run_id, "wall_s": wall, "test_acc": m.get("test/acc"),
            "epsilon": f.get("dp/epsilon"), "delta": f.get("dp/delta"), "noise_multiplier": f.get("dp/noise_multiplier"),
            "distance_l2": m[f"{key}/distance_l2"], "distance_ssim": m[f"{key}/distance_ssim"],
            "per_class_l2": [m[f"{key}/class_{k}/distance_l2"] for k in range(10)],
            "per_class_ssim": [m[f"{key}/class_{k}/distance_ssim"] for k in range(10)],
            "attack_acc": m.get(f"{key}/attack_acc"), "evaluator_acc": m.get(f"{key}/evaluator_acc"),
            "confidence": m.get(f"{key}/confidence"), "attack_s": m.get("time/inversion_optimization_s")}


def report(results: dict[str, dict]) -> None:
    print("\nMIA distance (ℓ2, the minimum over the class's members) per digit; paper Table I (enhanced MIA, "
          "vanilla) first")
    print(f"{'model':20} " + " ".join(f"{k:>6}" for k in range(10)) + f" {'mean':>6}")
    print(f"{'paper Table I':20} " + " ".join(f"{v:6.2f}" for v in PAPER_TABLE_I)
          + f" {sum(PAPER_TABLE_I) / 10:6.2f}")
    for name, r in results.items():
        print(f"{name:20} " + " ".join(f"{v:6.2f}" for v in r["per_class_l2"]) + f" {r['distance_l2']:6.2f}")
    print("\nMIA distance (1 − SSIM) per digit")
    for name, r in results.items():
        print(f"{name:20} " + " ".join(f"{v:6.3f}" for v in r["per_class_ssim"]) + f" {r['distance_ssim']:6.3f}")
    print(f"\n{'model':20} {'test acc':>8} {'sigma':>6} {'eps':>7} {'delta':>7} {'l2':>6} {'1-SSIM':>6} "
          f"{'attack acc':>10} {'f_label':>7} {'eval acc':>8} {'attack s':>8} {'wall s':>6}  run")
    for name, r in results.items():
        sigma = f"{r['noise_multiplier']:.2f}" if r["noise_multiplier"] is not None else "-"
        eps = f"{r['epsilon']:.2f}" if r["epsilon"] is not None else "-"
        delta = f"{r['delta']:.0e}" if r["delta"] is not None else "-"
        print(f"{name:20} {r['test_acc']:8.4f} {sigma:>6} {eps:>7} {delta:>7} {r['distance_l2']:6.2f} "
              f"{r['distance_ssim']:6.3f} {r['attack_acc']:10.2f} {r['confidence']:7.3f} {r['evaluator_acc']:8.3f} "
              f"{r['attack_s']:8.0f} {r['wall_s']:6.0f}  {r['run_id']}")
    record = {n: r for n, r in results.items() if n.startswith("record")}
    subclass = {n: r for n, r in results.items() if n.startswith("subclass")}
    if record and subclass:
        print("\nrecord-DP paired with the subclass-DP model of nearest test accuracy (paper: subclass-DP has the "
              "larger MIA distance at equal accuracy)")
        for n, r in record.items():
            s_name, s = min(subclass.items(), key=lambda item: abs(item[1]["test_acc"] - r["test_acc"]))
            print(f"{n:20} acc {r['test_acc']:.4f} l2 {r['distance_l2']:.2f} 1-SSIM {r['distance_ssim']:.3f} | "
                  f"{s_name:20} acc {s['test_acc']:.4f} l2 {s['distance_l2']:.2f} 1-SSIM {s['distance_ssim']:.3f} | "
                  f"acc gap {s['test_acc'] - r['test_acc']:+.4f}, l2 subclass − record "
                  f"{s['distance_l2'] - r['distance_l2']:+.2f}, classes where subclass > record "
                  f"{sum(a > b for a, b in zip(s['per_class_l2'], r['per_class_l2']))}/10")


if __name__ == "__main__":
    main_()
