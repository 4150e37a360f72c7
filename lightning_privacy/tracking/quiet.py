"""What a run prints besides its results (issue 15.8). Silenced: what every run printed that a user cannot act on
(Lightning's litlogger tip, the ``log_every_n_steps`` notice on short epochs, "validation_step but no
val_dataloader" from the audits' helper fits, which validate on nothing on purpose, and torch's LeafSpec
deprecation inside Lightning). Shown: the project's own one-line records of each long phase (``audit: ...``)."""

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


PROJECT_LOGGER = "lightning_privacy"


def show_project_log() -> None:
    """The project's INFO records (one line per audit phase: helper fits, signals, gradients, bootstrap) on
    stderr, as Lightning shows its own: a plain handler on the ``lightning_privacy`` logger, unless logging is
    configured already (the root logger has handlers, e.g. an application's or pytest's), and then not passed on
    to the root logger, which a library may configure later (each line would show twice); idempotent."""
    logger = logging.getLogger(PROJECT_LOGGER)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logging.getLogger().hasHandlers() and not any(isinstance(h, _ProjectHandler) for h in logger.handlers):
        handler = _ProjectHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


class _ProjectHandler(logging.StreamHandler):
    """stderr, looked up at each record (so a redirected ``sys.stderr`` is followed)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass
