"""Records what makes a run reproducible: the resolved config, the split, the code version."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from lightning_privacy.results import AuditResult
from lightning_privacy.tracking.publish import publish
from lightning_privacy.tracking.run_tags import aligned_config
from lightning_privacy.tracking.ui import mark_model_training


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"init_args": {"lr": 1}}}`` -> ``{"model.lr": 1}`` (``init_args`` levels dropped)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "init_args":
            out.update(flatten_config(value, prefix))
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, name + "."))
        else:
            out[name] = value
    return out


class RunRecorder(Callback):
    """At the start of fit/test: params = the resolved config; tags = split hash; artifacts = config, split."""

    def __init__(self, *, config: Mapping[str, Any], config_yaml: str, resumed: bool = False) -> None:
        """``resumed``: logging into an existing run, whose params are immutable: the config becomes an extra
        artifact (``audits/config-<time>.yaml``) and no params or split artifacts are logged."""
        self.config, self.config_yaml, self.resumed = config, config_yaml, resumed
        self._recorded: set[str] = set()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer)

    @rank_zero_only
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Class-/subclass-DP's groups exist once the training loader is built: the run keeps them."""
        private = getattr(pl_module, "private", None)
        groups = getattr(private, "groups", None)
        if groups is None or self.resumed or not getattr(pl_module, "logs_member_metrics", True):
            return  # the groups are a statistic of the members: logged only with dp.log_member_metrics
        arrays = {"group": groups.numpy()}
        if hasattr(trainer.datamodule, "training_indices"):
            arrays["index"] = trainer.datamodule.training_indices().numpy()  # the pool index of each record
        data = io.BytesIO()
        np.savez(data, **arrays)
        publish(AuditResult(name="dp_groups", artifacts={"dp_groups.npz": data.getvalue()}),
                [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)])

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer)

    @rank_zero_only
    def _record(self, trainer: Trainer) -> None:
        for logger in trainer.loggers:
            if not isinstance(logger, MLFlowLogger) or logger.run_id in self._recorded:
                continue
            self._recorded.add(logger.run_id)
            client, run_id = logger.experiment, logger.run_id
            mark_model_training(client, logger.experiment_id)  # MLflow's UI then shows runs, not GenAI traces
            if self.resumed:
                config = {f"audits/config-{time.strftime('%Y%m%d-%H%M%S')}.yaml": self.config_yaml}
                publish(AuditResult(name="config", artifacts=config), [logger])
                continue
            params = flatten_config(aligned_config(self.config))  # the same keys for every run of a family
            logger.log_hyperparams({k: v for k, v in params.items() if k != "compose"})
            splits = getattr(trainer.datamodule, "splits", None)
            artifacts = {"config.yaml": self.config_yaml}
            if splits is not None:
                artifacts["splits.npz"] = splits.save
            publish(AuditResult(name="config", artifacts=artifacts), [logger])
            if splits is not None:
                params = {"split.seed": splits.seed, "split.protocol": splits.protocol, "split.hash": splits.digest()}
                params.update({f"split.{role}": n for role, n in splits.sizes().items()})
                logger.log_hyperparams(params)
                client.set_tag(run_id, "split.hash", splits.digest())
