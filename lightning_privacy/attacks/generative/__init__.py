"""Membership attacks on generative models (functions of tensors): the discriminator's white-box ranking and its
total-variation bound, and the Monte-Carlo attacks on generated samples."""

from lightning_privacy.attacks.generative.discriminator import reduce_scores, tvd, wb_accuracy
from lightning_privacy.attacks.generative.metrics import leakage_metrics
from lightning_privacy.attacks.generative.monte_carlo import MCResult, PCA, fit_pca, mc_attack, mc_scores

__all__ = ["MCResult", "PCA", "fit_pca", "leakage_metrics", "mc_attack", "mc_scores", "reduce_scores", "tvd",
           "wb_accuracy"]
