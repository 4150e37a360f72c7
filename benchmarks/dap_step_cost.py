"""DAP's training-step cost against ERM's, measured in one process with the variants interleaved.

    .venv/bin/python benchmarks/dap_step_cost.py --rounds 15 --steps 20

Each round times ``--steps`` training steps of ERM, DAP in the paper's order (a second, autograd-free forward of
the updated network) and DAP with ``stale_features_approximation``, one after the other on the same Fashion-MNIST
sized batches (32 × 1 × 28 × 28, the papers' CNN); the figures are medians over rounds of ms per step, so a
machine whose load drifts during the run weighs on every variant alike. The discriminator is frozen at its
initialization: its weights do not change the cost of a step. Lightning's loop is left out (the same for all).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_privacy.defenses.dap import DAP
from lightning_privacy.defenses.erm import ERM


def _step_fn(model, optimizer):
    model.optimizers = lambda: optimizer
    model.manual_backward = lambda loss: loss.backward()
    model.log = lambda *args, **kwargs: None
    model.log_train_metrics = lambda *args, **kwargs: None
    if isinstance(model, DAP):
        return lambda batch: model.training_step(batch, 0)

    def erm(batch):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    return erm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = {"num_classes": 10, "input_shape": (1, 28, 28)}
    variants = {"erm": ERM(**shape), "dap (paper's order)": DAP(**shape),
                "dap (stale_features_approximation)": DAP(stale_features_approximation=True, **shape)}
    steps = {}
    for name, model in variants.items():
        model.train()
        optimizer = model.configure_optimizers()
        steps[name] = _step_fn(model, optimizer)
    batches = [(torch.randn(args.batch_size, 1, 28, 28), torch.randint(0, 10, (args.batch_size,)))
               for _ in range(args.steps)]
    times: dict[str, list[float]] = {name: [] for name in variants}
    for name in variants:  # warm-up
        for batch in batches[:3]:
            steps[name](batch)
    for _ in range(args.rounds):
        for name in variants:
            start = time.perf_counter()
            for batch in batches:
                steps[name](batch)
            times[name].append(1000 * (time.perf_counter() - start) / args.steps)
    erm = statistics.median(times["erm"])
    print(f"{'variant':38} {'ms/step (median)':>16} {'x erm':>6}   threads={torch.get_num_threads()}")
    for name, t in times.items():
        print(f"{name:38} {statistics.median(t):16.2f} {statistics.median(t) / erm:6.2f}")


if __name__ == "__main__":
    main()
