"""The PIGAN paper's Table 1 on real Fashion-MNIST (the 10 %-train protocol): GAN, PIGAN (N = 2, λ ∈ {1, 5, 10}),
PrivGAN (N = 2, λ = 0.01) and DPGAN, each a CLI fit of conf/experiments/fmnist_gan.yaml, one after another.

    .venv/bin/python benchmarks/fmnist_gan.py --epochs 12                 # a CPU budget (see RESULTS.md)
    .venv/bin/python benchmarks/fmnist_gan.py --full                      # the paper's 300 epochs (K = 200) on a GPU
    .venv/bin/python benchmarks/fmnist_gan.py --epochs 6 --models gan pigan_l5
    .venv/bin/python benchmarks/fmnist_gan.py --leaky                   # 512 members, 300 epochs: a GAN that leaks
    .venv/bin/python benchmarks/fmnist_gan.py --leaky --report-only     # the table of each model's latest run

A budget of E epochs scales the paper's schedule: PIGAN warms up for 2/3 E (paper K = 200 of 300), PrivGAN for
1/3 E (100 of 300), Q / the privacy discriminator pre-train for E/6 (50 of 300). Epoch-time ratios are measured
in this one invocation: each model's median epoch against the GAN's, and — the issue's ratio — PIGAN's (PrivGAN's)
median epoch after warm-up against its own warm-up epochs in the same run. The paper's FID 22.8 and IS 2.43 are
TensorFlow-Inception figures: only `gan/fid` / `gan/is` (pytorch-fid's weights, when present) stand beside them,
never the `_domain` metrics (a Fashion-MNIST classifier's features).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import REPO, epoch_times, fit_run, latest_run  # noqa: E402

# name -> (conf/defense file, model overrides, role in the schedule)
MODELS = {
    "gan": ("gan", {}),
    "pigan_l1": ("pigan", {"lam": 1.0}),
    "pigan_l5": ("pigan", {"lam": 5.0}),
    "pigan_l10": ("pigan", {"lam": 10.0}),
    "privgan": ("privgan", {"lam": 0.01}),
    "dpgan": ("dpgan", {}),
}
# PIGAN paper Table 1, Fashion-MNIST (WB %, MC-Set %, IS, FID, Intra-FID, downstream %); GAN: λ = 0 in Sec. 5.2.7
PAPER = {"pigan_l5": (17.7, 68.3, 2.43, 22.8, 119.7, 81.7), "privgan": (18.3, 67.0, 2.40, 33.9, 125.2, 79.6),
         "dpgan": (16.9, 65.0, 2.19, 46.1, 154.4, 76.1)}
COLUMNS = [("WB acc", "gan_mia/wb/acc"), ("TVD", "gan_mia/tvd"), ("MC-Set", "gan_mia/mc_set/acc"),
           ("MC-Single", "gan_mia/mc_single/acc"), ("WB AUC", "gan_mia/wb/auc"),
           ("WB TPR@0.1%", "gan_mia/wb/tpr_at_fpr_0.001"), ("MC-Set AUC", "gan_mia/mc_set/auc"),
           ("FID_domain", "gan/fid_domain"), ("IS_domain", "gan/is_domain"),
           ("Intra-FID_domain", "gan/intra_fid_domain"), ("downstream", "gan/downstream_acc"),
           ("FID (Inception)", "gan/fid"), ("IS (Inception)", "gan/is"), ("ε", "dp/epsilon")]


def schedule(model: str, epochs: int, full: bool) -> dict[str, object]:
    defense, overrides = MODELS[model]
    out: dict[str, object] = dict(overrides)
    if defense == "pigan":
        out.update(warmup_epochs=200 if full else max(1, round(epochs * 2 / 3)),
                   q_pretrain_epochs=50 if full else max(1, round(epochs / 6)))
    if defense == "privgan":
        out.update(warmup_epochs=100 if full else max(1, round(epochs / 3)),
                   q_pretrain_epochs=50 if full else max(1, round(epochs / 6)))
    return out


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=None, help="12 (--leaky: 300)")
    parser.add_argument("--full", action="store_true", help="the paper's 300 epochs and sample counts (a GPU)")
    parser.add_argument("--leaky", action="store_true",
                        help="conf/experiments/fmnist_gan_leaky.yaml: 512 members, a GAN that over-fits on a CPU")
    parser.add_argument("--report-only", action="store_true",
                        help="fit nothing: the table of each model's latest finished run (fits split over invocations)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--downstream-epochs", type=int, default=10, help="the budget's (the paper, --full: 50)")
    parser.add_argument("fit_args", nargs="*", help="extra fit arguments after --")
    args = parser.parse_args()
    epochs = 300 if args.full else args.epochs or (300 if args.leaky else 12)
    extra = ["--data.root", args.data_root, "--trainer.max_epochs", str(epochs), "--seed_everything",
             str(args.seed)]
    if not args.full:  # the CPU budget: the downstream CNN is the fidelity audit's dominant cost
        extra += ["--audit.gan_fidelity.downstream_epochs", str(args.downstream_epochs)]
    if args.full:
        extra += ["--audit.gan_membership.mc_generated", "100000", "--audit.gan_membership.mc_repeats", "20",
                  "--audit.gan_membership.mc_regenerate", "true", "--audit.gan_fidelity.samples", "10000",
                  "--audit.gan_fidelity.downstream_samples", "10000", "--audit.gan_fidelity.downstream_epochs", "50"]
    rows = {}
    for model in ["gan"] + [m for m in args.models if m != "gan"] if "gan" in args.models else args.models:
        defense, _ = MODELS[model]
        sched = schedule(model, epochs, args.full)
        name = f"bench-fmnist-{'leaky-' if args.leaky else ''}{model}"
        if args.report_only:
            run = latest_run(name)
            rows[model] = (run, (run.info.end_time - run.info.start_time) / 1000, sched)
            continue
        model_args = [a for k, v in sched.items() for a in (f"--model.init_args.{k}", str(v))]
        run, wall = fit_run(name, [
            "--config", str(REPO / "conf" / "experiments" / f"fmnist_gan{'_leaky' if args.leaky else ''}.yaml"),
            "--config", str(REPO / "conf" / "defense" / f"{defense}.yaml"), *extra, *model_args, *args.fit_args])
        rows[model] = (run, wall, sched)
    report(rows)


def report(rows: dict) -> None:
    gan_epoch = statistics.median(epoch_times(rows["gan"][0])) if "gan" in rows else None
    print("\n| model | " + " | ".join(c for c, _ in COLUMNS) + " | median epoch s | ÷ GAN epoch | after ÷ before "
          "warm-up | Q pre-train ÷ GAN epoch | fit wall s | run |")
    print("|---" * (len(COLUMNS) + 7) + "|")
    for model, (run, wall, sched) in rows.items():
        m = run.data.metrics
        times = epoch_times(run)
        epoch = statistics.median(times)
        warm = int(sched.get("warmup_epochs", 0))
        split = (f"{statistics.median(times[warm:]) / statistics.median(times[:warm]):.2f}"
                 if 0 < warm < len(times) else "–")
        pre = m.get("time/q_pretrain_s")
        cells = [f"{m[k]:.3f}" if k in m else "–" for _, k in COLUMNS]
        ratio = f"{epoch / gan_epoch:.2f}" if gan_epoch else "–"
        pre_ratio = f"{pre / gan_epoch:.1f}" if pre is not None and gan_epoch else "–"
        print(f"| {model} | " + " | ".join(cells) + f" | {epoch:.1f} | {ratio} | {split} | {pre_ratio} | {wall:.0f} | "
              f"{run.info.run_id} |")
    print("\nPaper, Table 1 (Fashion-MNIST; WB %, MC-Set %, IS, FID, Intra-FID, downstream %; IS/FID are "
          "TensorFlow-Inception figures):")
    for model, cells in PAPER.items():
        print(f"  {model}: {cells}")


if __name__ == "__main__":
    main_()
