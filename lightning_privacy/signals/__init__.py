"""Per-sample signals computed from models: black-box outputs (``outputs``) and white-box gradient norms
(``gradients``). Tensors in, tensors out: no Lightning callbacks, no loggers."""

from lightning_privacy.signals.base import Signals
from lightning_privacy.signals.gradients import GRAD_NORM_KEYS, collect_grad_norms, per_sample_grad_norms
from lightning_privacy.signals.outputs import collect_signals, released_signals

__all__ = ["GRAD_NORM_KEYS", "Signals", "collect_grad_norms", "collect_signals", "per_sample_grad_norms",
           "released_signals"]
