"""Sweeps: a grid of ordinary fits on Ray Tune, tagged and skipped by the hash of their resolved config."""
