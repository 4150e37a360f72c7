"""The DP-vs-regularization paper's Table 4 on real MNIST and Fashion-MNIST: the layer-wise decoder inversion attack
(`audit.inversion`, `attacks: [decoder]`) against ERM, L2, dropout, L2 + dropout and DP-SGD at ε = 2, 4, 8, each
one `lightning-privacy fit` through the CLI, logged to ./mlruns (experiment "benchmarks").

    .venv/bin/python benchmarks/inversion_layers.py                          # the CPU budget (see RESULTS.md)
    .venv/bin/python benchmarks/inversion_layers.py --datasets mnist --targets erm l2 dp_eps2
    .venv/bin/python benchmarks/inversion_layers.py --full                   # the paper's sizes (GPU)

Targets: the papers' CNN (conf/net/paper_cnn.yaml) with batch 200 for every target (the paper's), epochs fixed to
the same number for all (the paper fixes DP's to the baseline's optimum); `reg` with dropout 0 and l2 2e-2 (L2 on
the prediction layer), l2 0 and dropout 0.2 between every weighted layer (not conf/defense/dropout.yaml, RelaxLoss'
last-layer dropout), both; `dpsgd` in target-ε mode (δ 1e-5, C 1, the noise solved for the fixed epochs).
The optimizer is the project's Adam at lr 1e-3 for all, not the paper's SGD at lr 0.1 (ClassifierDefense has no
SGD option). The decoder attacker trains on the `reference` role and is scored on members and non-members.

Prints, per dataset, the per-layer MSE of the members and the non-members and their % variation against ERM
beside the paper's Table 4 (averaged there over CIFAR-10, MNIST and F-MNIST test sets), the white-box best layer
and the black-box MSE, SSIM and PSNR, test accuracy, ε and the run ids; --json writes all of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_runs import REPO, fit_run, role_args  # noqa: E402

from lightning_privacy.attacks.inversion.decoder import network_layers  # noqa: E402
from lightning_privacy.models.cnn import PaperCNN  # noqa: E402

ROWS = ["Conv1", "MaxPool1", "Conv2", "MaxPool2", "Conv3", "MaxPool3", "Dense", "Prediction"]
# DP-vs-regularization paper, Table 4: % variation of the reconstruction MSE against the baseline, per layer,
# averaged over the three datasets' test sets (higher = more protection).
PAPER = {
    "dp_eps2": [2.1, 3.1, 4.6, 3.4, 4.2, -14.6, -21.7, -17.7],
    "dp_eps4": [2.5, 0.6, 0.7, -0.5, -9.3, -15.6, -25.8, -18.2],
    "dp_eps8": [-1.4, 1.7, 3.2, -1.3, -10.5, -17.2, -25.2, -15.8],
    "l2": [-0.74, -0.52, -2.99, -3.28, -7.13, -11.5, 17.1, 73.8],
    "dropout": [22.0, 19.0, 18.2, 28.2, 11.4, 8.6, 17.3, -1.8],
    "l2_dropout": [10.8, -0.2, 1.6, 4.2, 2.7, -3.6, 21.3, 64.2],
}
# Table 1: test accuracy (MNIST, F-MNIST)
PAPER_ACC = {"mnist": {"erm": 0.992, "dp_eps2": 0.942, "dp_eps4": 0.963, "dp_eps8": 0.968, "l2": 0.991,
                       "dropout": 0.996, "l2_dropout": 0.994},
             "fashion_mnist": {"erm": 0.900, "dp_eps2": 0.820, "dp_eps4": 0.823, "dp_eps8": 0.829, "l2": 0.896,
                               "dropout": 0.890, "l2_dropout": 0.879}}
TARGETS = {  # name: (defense file, model overrides, dropout of the network)
    "erm": ("erm", [], 0.0),
    "l2": ("reg", ["--model.init_args.dropout", "0", "--model.init_args.l2", "0.02"], 0.0),
    "dropout": ("reg", ["--model.init_args.dropout", "0.2", "--model.init_args.l2", "0"], 0.2),
    "l2_dropout": ("reg", ["--model.init_args.dropout", "0.2", "--model.init_args.l2", "0.02"], 0.2),
    **{f"dp_eps{e}": ("dpsgd", ["--model.init_args.dp.target_epsilon", str(e), "--model.init_args.dp.seed", "0"], 0.0)
       for e in (2, 4, 8)},
}


def layer_points(dropout: float) -> list[str]:
    """The decoder's white-box points of the papers' CNN in order (names shift when dropout modules are in)."""
    points = network_layers(PaperCNN(dropout=dropout))
    assert len(points) == len(ROWS), points
    return points


def pct(value: float, base: float) -> float:
    return 100.0 * (value - base) / base


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"], choices=list(PAPER_ACC))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--nonmembers", type=int, default=500)
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--reference", type=int, default=1000, help="the decoder attacker's data")
    parser.add_argument("--epochs", type=int, default=5, help="every target's (DP's fixed to ERM's, as the paper)")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--decoder-samples", type=int, default=800)
    parser.add_argument("--eval-samples", type=int, default=300)
    parser.add_argument("--decoder-epochs", type=int, default=3)
    parser.add_argument("--decoder-batch-size", type=int, default=32)
    parser.add_argument("--decoder-width", type=int, default=16)
    parser.add_argument("--full", action="store_true",
                        help="the paper's sizes: all official train images but 6,000 validation and 10,000 "
                             "reference as members, the official test set as non-members, 30 epochs, decoders on "
                             "all 10,000 reference images for 10 epochs at width 64 and batch 64, all scored")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args()
    if args.full:
        args.members, args.nonmembers, args.validation, args.reference = None, None, 6000, 10000
        args.epochs, args.decoder_samples, args.eval_samples = 30, None, None
        args.decoder_epochs, args.decoder_width, args.decoder_batch_size = 10, 64, 64
    data_args = role_args(args)
    audit_args = ["--audit.inversion.attacks", "[decoder]", "--audit.inversion.decoder_width", str(args.decoder_width),
                  "--audit.inversion.decoder_epochs", str(args.decoder_epochs),
                  "--audit.inversion.decoder_batch_size", str(args.decoder_batch_size),
                  "--audit.inversion.decoder_samples", str(args.decoder_samples or "null"),
                  "--audit.inversion.eval_samples", str(args.eval_samples or "null"), "--audit.inversion.grid", "4"]
    print(f"budget: members {args.members}, non-members {args.nonmembers}, reference {args.reference}, "
          f"{args.epochs} epochs at batch {args.batch_size}; decoders: width {args.decoder_width}, "
          f"{args.decoder_epochs} epochs at batch {args.decoder_batch_size} on {args.decoder_samples} reference "
          f"images, scored on {args.eval_samples} members and {args.eval_samples} non-members", flush=True)
    start_all = time.perf_counter()
    results: dict[str, dict[str, dict]] = {}
    for dataset in args.datasets:
        results[dataset] = {}
        for target in args.targets:
            defense, overrides, dropout = TARGETS[target]
            run, wall = fit_run(f"bench-inversion-{dataset}-{target}", [
                "--config", str(REPO / "conf" / "data" / f"{dataset}.yaml"),
                "--config", str(REPO / "conf" / "defense" / f"{defense}.yaml"),
                "--config", str(REPO / "conf" / "net" / "paper_cnn.yaml"),
                "--config", str(REPO / "conf" / "trainer" / "default.yaml"),
                "--config", str(REPO / "conf" / "audit" / "inversion.yaml"),
                *data_args, "--trainer.max_epochs", str(args.epochs), *overrides, *audit_args])
            m = run.data.metrics
            points = layer_points(dropout)
            results[dataset][target] = {
                "run_id": run.info.run_id, "wall_s": wall, "test_acc": m.get("test/acc"),
                "epsilon": m.get("dp/epsilon"), "noise_multiplier": m.get("dp/noise_multiplier"),
                "best_layer": ROWS[points.index(run.data.tags["inversion.decoder.best_layer"])],
                "decoder_s": m.get("time/inversion_decoder_s"),
                "layers": {row: {f"{k}_{s}": m[f"inversion/decoder/{p}/{k}_{s}"] for k in ("mse", "ssim", "psnr")
                                 for s in ("members", "nonmembers")} for row, p in zip(ROWS, points)},
                "blackbox": {f"{k}_{s}": m[f"inversion/decoder/blackbox/{k}_{s}"] for k in ("mse", "ssim", "psnr")
                             for s in ("members", "nonmembers")},
                "whitebox_mse": m["inversion/decoder/whitebox_mse"]}
            print(f"[{dataset} {target}] acc {m.get('test/acc'):.4f} wall {wall:.0f}s run {run.info.run_id}",
                  flush=True)
        report(dataset, results[dataset])
    total = time.perf_counter() - start_all
    print(f"\ntotal wall time {total:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "total_wall_s": total, "results": results},
                                              indent=2))


def report(dataset: str, res: dict[str, dict]) -> None:
    if "erm" not in res:
        return
    base = res["erm"]
    others = [t for t in res if t != "erm"]
    for split in ("nonmembers", "members"):
        print(f"\n{dataset}: decoder MSE ({split}), ERM absolute, others % variation against ERM "
              f"[paper Table 4 beside, test sets]")
        print(f"{'layer':11} {'ERM':>8} " + " ".join(f"{t:>18}" for t in others))
        for row in ROWS + ["blackbox"]:
            get = (lambda r: r["blackbox"]) if row == "blackbox" else (lambda r, row=row: r["layers"][row])
            b = get(base)[f"mse_{split}"]
            cells = []
            for t in others:
                v = pct(get(res[t])[f"mse_{split}"], b)
                paper = PAPER[t][ROWS.index(row)] if row in ROWS and t in PAPER else None
                cells.append(f"{v:+7.1f} [{paper:+6.1f}]" if paper is not None and split == "nonmembers"
                             else f"{v:+7.1f}         ")
            print(f"{row:11} {b:8.4f} " + " ".join(f"{c:>18}" for c in cells))
    print(f"\n{dataset}: per target")
    print(f"{'target':11} {'acc':>6} {'paper':>6} {'eps':>6} {'sigma':>6} {'best layer':>10} {'wb mse':>7} "
          f"{'bb mse':>7} {'bb ssim':>7} {'bb psnr':>7} {'Conv1 ssim':>10} {'Conv1 psnr':>10} {'wall s':>6}  run")
    for t, r in res.items():
        eps = f"{r['epsilon']:.2f}" if r["epsilon"] is not None else "-"
        sigma = f"{r['noise_multiplier']:.2f}" if r["noise_multiplier"] is not None else "-"
        print(f"{t:11} {r['test_acc']:6.4f} {PAPER_ACC[dataset][t]:6.3f} {eps:>6} {sigma:>6} {r['best_layer']:>10} "
              f"{r['whitebox_mse']:7.4f} {r['blackbox']['mse_nonmembers']:7.4f} {r['blackbox']['ssim_nonmembers']:7.3f} "
              f"{r['blackbox']['psnr_nonmembers']:7.2f} {r['layers']['Conv1']['ssim_nonmembers']:10.3f} "
              f"{r['layers']['Conv1']['psnr_nonmembers']:10.2f} {r['wall_s']:6.0f}  {r['run_id']}")


if __name__ == "__main__":
    main_()
