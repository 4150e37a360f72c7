"""Model-inversion attacks: the optimization attack (class-DP paper, Algorithm 1) and the layer-wise decoder attack
(DP-vs-regularization paper, Sec. 4)."""
