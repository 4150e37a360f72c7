"""DP-SGD step cost on the papers' CNN: our per-sample clipping engine vs Opacus vs a plain step.

    .venv/bin/python benchmarks/dp_clipping.py                      # batch 32 and 256, CPU
    .venv/bin/python benchmarks/dp_clipping.py --batch-sizes 256 --repeats 7 --steps 10
    .venv/bin/python benchmarks/dp_clipping.py --device cuda

One step = forward + backward + optimizer step (SGD) on a random 1x28x28 batch, 10 classes:

- plain: mean cross-entropy, ``loss.backward()``, ``opt.step()``;
- ours-<strategy>: forward under ``PerSampleClipper.recording()``, ``clip_and_sum``, Gaussian noise
  (sigma = 1), divide by the batch size, ``opt.step()`` (lightning_privacy/privacy/clipping.py);
- opacus-hooks: ``GradSampleModule`` (hooks mode) + ``DPOptimizer`` (same sigma and C).

Methods are interleaved: each repeat times ``--steps`` steps of every method in turn and keeps each method's
median step; the figure printed is the best (lowest) of those medians over ``--repeats`` repeats, and the
ratios are to the plain step measured in this same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lightning_privacy.models.cnn import PaperCNN  # noqa: E402
from lightning_privacy.privacy.clipping import PerSampleClipper  # noqa: E402

MAX_GRAD_NORM = 1.0
SIGMA = 1.0


def plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def ours_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, strategy: str) -> Callable[[], None]:
    clipper = PerSampleClipper(model, max_grad_norm=MAX_GRAD_NORM, strategy=strategy)  # type: ignore[arg-type]
    opt = torch.optim.SGD(clipper.params, lr=0.01)
    n = x.shape[0]

    def step() -> None:
        with clipper.recording():
            loss = F.cross_entropy(model(x), y, reduction="none")
        out = clipper.clip_and_sum(loss)
        for p, g in zip(clipper.params, out.grads):
            p.grad = g.add_(torch.randn_like(g), alpha=SIGMA * MAX_GRAD_NORM).div_(n)
        opt.step()

    step.clipper = clipper  # type: ignore[attr-defined]  (closed by the caller)
    return step


def opacus_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.01), noise_multiplier=SIGMA,
                      max_grad_norm=MAX_GRAD_NORM, expected_batch_size=x.shape[0])

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(gsm(x), y).backward()
        opt.step()

    return step


def time_steps(step: Callable[[], None], steps: int, sync: Callable[[], None]) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(batch: int, device: torch.device, methods: list[str], steps: int,
          repeats: int) -> tuple[dict[str, float], dict[str, str]]:
    torch.manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fns: dict[str, Callable[[], None]] = {}
    for m in methods:
        model = PaperCNN().to(device)
        if m == "plain":
            fns[m] = plain_step(model, x, y)
        elif m == "opacus-hooks":
            fns[m] = opacus_step(model, x, y)
        else:
            fns[m] = ours_step(model, x, y, m.removeprefix("ours-"))
    for fn in fns.values():  # warm-up: allocator, oneDNN primitives, lazy imports
        for _ in range(2):
            fn()
        sync()
    best = {m: float("inf") for m in methods}
    for _ in range(repeats):
        for m, fn in fns.items():
            best[m] = min(best[m], time_steps(fn, steps, sync))
    plan = fns["ours-mixed"].clipper.plan if "ours-mixed" in fns else {}  # type: ignore[attr-defined]
    for fn in fns.values():
        if hasattr(fn, "clipper"):
            fn.clipper.close()  # type: ignore[attr-defined]
    return best, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--methods", nargs="+",
                        default=["plain", "ours-mixed", "ours-ghost", "ours-materialize", "opacus-hooks"])
    parser.add_argument("--steps", type=int, default=10, help="steps per method per repeat (median taken)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats (best median kept)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = args.methods if "plain" in args.methods else ["plain", *args.methods]
    print(f"PaperCNN (conv 32-64-128, dense 128), 1x28x28, torch {torch.__version__}, device {device}, "
          f"{torch.get_num_threads()} threads; best of {args.repeats} medians of {args.steps} steps")
    print(f"{'batch':>5} {'method':18} {'ms/step':>9} {'x plain':>8}")
    for batch in args.batch_sizes:
        best, plan = bench(batch, device, methods, args.steps, args.repeats)
        for m in methods:
            print(f"{batch:5d} {m:18} {best[m] * 1e3:9.2f} {best[m] / best['plain']:8.2f}")
        if plan:
            print(f"{'':5} mixed per layer: " + ", ".join(f"{k} {v}" for k, v in plan.items()))


if __name__ == "__main__":
    main()
