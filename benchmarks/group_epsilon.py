"""Subclass-level ε at the class-DP paper's MNIST settings: the σ/2 RDP bound (the account before issue 9) against
the exact replace-one-subclass account (dp-accounting's PLD), beside Theorem 1 and the paper's figures.

    .venv/bin/python benchmarks/group_epsilon.py [--steps 200 1000]

Settings (Zhang et al., MNIST, subclass level): σ 1.6 / 3.0 / 3.65, q 0.2, S 3.0, k_sub 50, δ 1e-3; the paper reports
ε 18.6 / 8.2 / 7 and gives no step count, so the table is printed for each ``--steps``. S and k_sub do not enter ε
(the noise is σS and the account is in units of S; K sets only the expected batch qK). Pure accounting: seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_privacy.privacy.accounting import group_epsilon, theorem1_epsilon  # noqa: E402

PAPER = {1.6: 18.6, 3.0: 8.2, 3.65: 7.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--sample-rate", type=float, default=0.2)
    parser.add_argument("--delta", type=float, default=1e-3)
    args = parser.parse_args()
    q, delta = args.sample_rate, args.delta
    print("| σ | T | σ/2 RDP bound (before) | exact replace-one (after) | before ÷ after | Theorem 1 (valid?) | paper |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for steps in args.steps:
        for sigma, paper in PAPER.items():
            common = dict(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)
            before = group_epsilon(**common, accountant="rdp")
            after = group_epsilon(**common)
            thm1, valid = theorem1_epsilon(**common)
            print(f"| {sigma} | {steps} | {before:.2f} | {after:.2f} | {before / after:.2f}× | {thm1:.2f} "
                  f"({'yes' if valid else 'no'}) | {paper} |")


if __name__ == "__main__":
    main()
