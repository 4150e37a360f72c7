"""DP machinery shared by defenses: per-sample clipping, accountants, the one-run ε audit bound."""
