"""Crash-resume: the last checkpoint is saved by default and carries its MLflow run id; ``fit --ckpt_path last``
finds the newest last checkpoint of the same config and continues that run, sending no (metric, step) twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from lightning_privacy.errors import UserInputError
from lightning_privacy.tracking.config_hash import config_hash

CHECKPOINT_KEY = "lightning_privacy_run"


def resume_hash(config: Mapping[str, Any]) -> str:
    """What must match for a checkpoint to be resumed: the config's hash without outputs and ``ckpt_path``."""
    return config_hash(config, also=("ckpt_path",))


def enable_last_checkpoint(trainer: Trainer) -> None:
    """Every ModelCheckpoint that does not say otherwise (``save_last: null``) also keeps ``last.ckpt``."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.save_last is None:
            cb.save_last = True


class RunInCheckpoint(Callback):
    """Saves the MLflow run id and the config's resume hash in every checkpoint."""

    def __init__(self, config_hash: str) -> None:
        self.config_hash = config_hash

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        runs = [lg.run_id for lg in trainer.loggers if isinstance(lg, MLFlowLogger)]
        checkpoint[CHECKPOINT_KEY] = {"run_id": runs[0] if runs else None, "config_hash": self.config_hash}


def find_last_checkpoint(root: Path, config_hash: str) -> tuple[Path, dict]:
    """The newest ``last*.ckpt`` under ``root`` saved by a fit of this config, with its run record."""
    import torch

    candidates = sorted(Path(root).glob("**/last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            record = torch.load(path, map_location="cpu", weights_only=False, mmap=True).get(CHECKPOINT_KEY)
        except Exception:  # a checkpoint cut short by the crash itself: try the next one
            continue
        if record and record.get("config_hash") == config_hash:
            return path, record
    raise UserInputError(f"--ckpt_path last: no last checkpoint of this config under {root} ({len(candidates)} "
                         "last checkpoints of other configs or none at all); nothing to resume. Drop --ckpt_path "
                         "to train from scratch, or pass a checkpoint file")


def check_same_split(uri: str, run_id: str, split_hash: Optional[str]) -> None:
    """A resumed fit trains on the split its run recorded (tag ``split.hash``), or not at all."""
    from mlflow import MlflowClient

    recorded = MlflowClient(uri).get_run(run_id).data.tags.get("split.hash")
    if recorded and split_hash and recorded != split_hash:
        raise UserInputError(f"--ckpt_path last: run {run_id} trained on split {recorded}, but this fit's data draws "
                             f"split {split_hash} (the data files or the split code changed?): resuming would mix two "
                             "member sets in one run. Restore the data, or drop --ckpt_path to start a new run")


class ContinuedMLFlowLogger(MLFlowLogger):
    """Logs into an interrupted run: a (metric, step) pair the run already holds is not sent again (MLflow cannot
    delete points), so after the resume each pair has exactly one value: the first one logged."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._logged: Optional[set[tuple[str, int]]] = None

    def _existing(self) -> set[tuple[str, int]]:
        client, run_id = self.experiment, self.run_id
        keys = client.get_run(run_id).data.metrics
        return {(key, m.step) for key in keys for m in client.get_metric_history(run_id, key)}

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        if self._logged is None:
            self._logged = self._existing()
        at = step or 0
        new = {k: v for k, v in metrics.items() if (k, at) not in self._logged}
        self._logged.update((k, at) for k in new)
        if new:
            super().log_metrics(new, step)


def continued_logger(*, uri: str, experiment: str, run_id: str) -> ContinuedMLFlowLogger:
    return ContinuedMLFlowLogger(experiment_name=experiment, tracking_uri=uri, run_id=run_id)
