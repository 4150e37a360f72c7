"""Silence what every run printed that a user cannot act on (issue 15.8): Lightning's litlogger tip, the
``log_every_n_steps`` notice on short epochs, "validation_step but no val_dataloader" from the audits' helper
fits (which validate on nothing on purpose), and torch's LeafSpec deprecation inside Lightning."""

from __future__ import annotations

import logging
import warnings

UNACTIONABLE_WARNINGS = (
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"You defined a `validation_step` but have no `val_dataloader`",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
UNACTIONABLE_LOGS = ("Tip: For seamless cloud logging",)
LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in UNACTIONABLE_LOGS)


def silence_unactionable() -> None:
    """Install the filters (idempotent): warnings by message, log records by text."""
    for pattern in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
