"""The base of every audit callback: it computes an ``AuditResult`` and hands it to its subscribers (the tracking
layer's ``ResultPublisher``), so that no audit writes files or talks to a tracker itself."""

from __future__ import annotations

from typing import Callable, Optional

from lightning.pytorch import Callback, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from lightning_privacy.results import AuditResult

Subscriber = Callable[[Trainer, AuditResult], None]


class AuditCallback(Callback):
    """``audit_results``: every result this callback produced, in order; ``emit`` records one and passes it on."""

    def __init__(self) -> None:
        self.audit_results: list[AuditResult] = []
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        if subscriber not in self._subscribers:
            self._subscribers.append(subscriber)

    @property
    def last_result(self) -> Optional[AuditResult]:
        return self.audit_results[-1] if self.audit_results else None

    def emit(self, trainer: Trainer, result: AuditResult) -> AuditResult:
        self.audit_results.append(result)
        if not self._subscribers and trainer.loggers:
            rank_zero_warn(f"{type(self).__name__}: no ResultPublisher among the trainer's callbacks, so its results "
                           "stay on the callback (audit_results) and reach no logger; add "
                           "lightning_privacy.tracking.publish.ResultPublisher()")
        for subscriber in self._subscribers:
            subscriber(trainer, result)
        return result
