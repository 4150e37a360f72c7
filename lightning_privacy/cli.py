"""``lightning-privacy fit|validate|test``: LightningCLI + composed YAML + audits + one MLflow run per call."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden

from lightning_privacy.callbacks.registry import AUDITS
from lightning_privacy.callbacks.timing import EpochTimer
from lightning_privacy.data.base import PrivacyDataModule
from lightning_privacy.errors import UserInputError
from lightning_privacy.results import AuditResult
from lightning_privacy.tracking.catalog import explain, overview
from lightning_privacy.tracking.mlflow import (
    TrackingConfig,
    build_logger,
    check_reachable,
    default_tracking_uri,
    existing_run,
    resolve_tracking_uri,
)
from lightning_privacy.tracking.publish import ResultPublisher, publish
from lightning_privacy.tracking.quiet import show_project_log, silence_unactionable
from lightning_privacy.tracking.resume import (RunInCheckpoint, check_same_split, continued_logger,
                                               enable_last_checkpoint, find_last_checkpoint, resume_hash)
from lightning_privacy.tracking.run_info import RunRecorder, git_commit
from lightning_privacy.tracking.run_tags import run_tags
from lightning_privacy.tracking.summary import InterruptReport, audit_command, print_summary, summary_rows

URI_FLAG = "--tracking.uri"
# main() passes LightningCLI the command line after expanding `compose:`, which differs from sys.argv on purpose.
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)


def expand_compose(argv: Sequence[str]) -> list[str]:
    """Replace each ``--config F`` by ``--config`` for every file F composes (its ``compose:`` list, paths
    relative to F, recursively), then F itself: F's own values win over its parts, later flags over all."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--config" and i + 1 < len(args):
            out += _expand(Path(args[i + 1]), ())
            i += 2
        elif token.startswith("--config="):
            out += _expand(Path(token.split("=", 1)[1]), ())
            i += 1
        else:
            out.append(token)
            i += 1
    return out


def _expand(path: Path, stack: tuple[Path, ...]) -> list[str]:
    if not path.is_file():
        raise UserInputError(f"config file {path} does not exist" + (f" (composed by {stack[-1]})" if stack else ""))
    resolved = path.resolve()
    if resolved in stack:
        raise UserInputError(f"config files compose each other in a cycle: {' -> '.join(map(str, stack + (resolved,)))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserInputError(f"config file {path} is not valid YAML: {e}") from e
    parts = data.get("compose") if isinstance(data, dict) else None
    if parts is not None and not (isinstance(parts, list) and all(isinstance(p, str) for p in parts)):
        raise UserInputError(f"'compose' in {path} must be a list of config file paths")
    out: list[str] = []
    for part in parts or []:
        out += _expand(path.parent / part, stack + (resolved,))
    return out + ["--config", str(path)]


def checkpoint_of(run: Any) -> str:
    """The checkpoint a finished run tested and audited (its ``audit.checkpoint`` tag)."""
    path = run.data.tags.get("audit.checkpoint", "")
    if not path.endswith(".ckpt"):
        raise UserInputError(f"run {run.info.run_id} recorded no saved checkpoint (audit.checkpoint = {path!r}); "
                             "pass --ckpt_path")
    if not Path(path).is_file():
        raise UserInputError(f"run {run.info.run_id}'s checkpoint {path} does not exist here; pass --ckpt_path")
    return path


CKPT_KEYWORDS = ("best", "last", "hpc", "registry")


def check_ckpt_path(path: Optional[str]) -> None:
    """``--ckpt_path`` names a checkpoint file that exists (or one of Lightning's keywords)."""
    if path and path not in CKPT_KEYWORDS and not path.startswith("registry:") and not Path(path).is_file():
        raise UserInputError(f"--ckpt_path {path}: no such checkpoint file; give the path a fit printed in its "
                             "summary ('checkpoint'), or pass --tracking.run_id RUN to audit that run's checkpoint")


def audited_weights(trainer: Trainer) -> tuple[Optional[str], str]:
    """The best validation checkpoint when a monitoring ModelCheckpoint saved one, else the last weights, with
    the checkpoint that holds them when one was saved at the last step (e.g. Lightning's default checkpointing)."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path:
            return cb.best_model_path, "best_val_checkpoint"
    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint) or cb.monitor:
            continue
        for path in (cb.last_model_path, cb.best_model_path):
            if path and Path(path).is_file() and _global_step(path) == trainer.global_step:
                return path, "last"
    return None, "last"


def _global_step(path: str) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("global_step", -1))


class KeepLinesFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter, keeping the description's line breaks (its lists, one entry a line)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


def prepare_resume(cli: "PrivacyCLI") -> dict[str, Any]:
    """A fit's resume record: its config hash (saved in its checkpoints); for ``--ckpt_path last`` also the newest
    last checkpoint of the same config (an error when there is none) and its run id, which the fit continues."""
    cfg = cli._subconfig
    config = yaml.safe_load(cli._parser("fit").dump(cfg, skip_none=False, skip_validation=True))
    config["seed_everything"] = getattr(cli, "seed_requested", config.get("seed_everything"))
    record: dict[str, Any] = {"config_hash": resume_hash(config)}
    if cfg.get("ckpt_path") == "last":
        root = Path(cfg.trainer.get("default_root_dir") or os.getcwd())
        path, saved = find_last_checkpoint(root, record["config_hash"])
        cfg.ckpt_path = str(path)
        record.update(path=str(path), run_id=saved.get("run_id"))
        if saved.get("run_id"):
            cfg.tracking.run_id = saved["run_id"]  # its params stay; the config is added as an artifact
    return record


class PrivacyCLI(LightningCLI):
    def __init__(self, args: Optional[list[str]] = None, *, explicit_uri: bool = False, run: bool = True,
                 config_files: Sequence[str] = ()) -> None:
        self.explicit_uri = explicit_uri
        self.config_files = list(config_files)  # as the user gave them, for the commands the summaries print
        self._audited_checkpoint: Optional[str] = None
        self.tracking_uri: Optional[str] = None
        super().__init__(
            model_class=None,
            datamodule_class=PrivacyDataModule,
            subclass_mode_data=True,
            save_config_callback=None,
            seed_everything_default=0,  # the seed Lightning picked with a "No seed found" warning, now stated
            parser_kwargs={"parser_mode": "omegaconf"},
            trainer_defaults={"default_root_dir": "outputs", "callbacks": [RichProgressBar(console_kwargs={"stderr": True})]},
            args=args,
            run=run,
        )

    def init_parser(self, **kwargs: Any) -> Any:
        """Parse errors are raised (``main`` prints them as one line) instead of a usage dump; the help describes
        the tool and its choices, keeping their line breaks."""
        kwargs.setdefault("exit_on_error", False)
        kwargs.setdefault("formatter_class", KeepLinesFormatter)
        tool = overview({name: entry.help for name, entry in AUDITS.items()})
        kwargs["description"] = f"{kwargs['description']}\n\n{tool}" if kwargs.get("description") else tool
        return super().init_parser(**kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit, validate and test (Lightning's ``predict`` has no use here: no prediction writer is configured)."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--compose", type=Optional[list[str]], default=None,
                            help="Config files this one is composed of (expanded by the CLI; see README).")
        parser.add_argument("--tracking", type=TrackingConfig, default=TrackingConfig(), help="MLflow tracking.")
        for name, entry in AUDITS.items():  # one key per audit kind: audit files stacked later merge per key
            parser.add_argument(f"--audit.{name}", type=Optional[entry.config], default=None, help=entry.help)
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")

    @property
    def _subconfig(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def _set_seed(self) -> None:
        self.seed_requested = self._get(self.config, "seed_everything")  # before a `true` is drawn: resume's hash
        super()._set_seed()

    def before_instantiate_classes(self) -> None:
        self.resume = prepare_resume(self) if self.subcommand == "fit" else None
        check_ckpt_path(self._subconfig.get("ckpt_path"))
        tracking: TrackingConfig = self._subconfig.tracking
        if tracking.enabled:
            self.tracking_uri = resolve_tracking_uri(
                flag=tracking.uri if self.explicit_uri else None,
                env=os.environ.get("MLFLOW_TRACKING_URI"),
                config=tracking.uri,
                default=default_tracking_uri(),
            )
            check_reachable(self.tracking_uri)
            if tracking.run_id and self.subcommand == "test" and not self._subconfig.get("ckpt_path"):
                self._subconfig.ckpt_path = checkpoint_of(existing_run(self.tracking_uri, tracking.run_id))

    def _audit_callbacks(self) -> list:
        if self.subcommand not in ("fit", "test"):
            return []
        audits = self._subconfig.get("audit") or {}
        callbacks: list = [entry.callback(audits.get(name)) for name, entry in AUDITS.items()
                           if audits.get(name) is not None and self.subcommand in entry.subcommands]
        return [*callbacks, ResultPublisher()] if callbacks else []

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self._subconfig
        if self.tracking_uri is not None:
            tags = {
                **run_tags(self.model, self.datamodule),
                "git.commit": git_commit(),
                "cli.subcommand": str(self.subcommand),
            }
            logger = build_logger(uri=self.tracking_uri, config=cfg.tracking, tags=tags)
            if self.resume is not None and self.resume.get("run_id"):  # the interrupted fit's own run
                logger = continued_logger(uri=self.tracking_uri, experiment=cfg.tracking.experiment,
                                          run_id=self.resume["run_id"])
            configured = self._get(self.config_init, "trainer", default={}).get("logger")
            others = configured if isinstance(configured, list) else [configured] if isinstance(configured, Logger) else []
            kwargs["logger"] = [logger, *others]
        if self._get(self.config_init, "trainer", default={}).get("enable_progress_bar") is False:
            # Lightning refuses a progress-bar callback with the flag off: drop the default one (the audits' bars
            # follow the same switch)
            defaults = self.trainer_defaults.get("callbacks", [])
            self.trainer_defaults = {**self.trainer_defaults,
                                     "callbacks": [c for c in defaults if not isinstance(c, RichProgressBar)]}
        strategy = self._get(self.config_init, "trainer", default={}).get("strategy")
        if strategy == "ddp" and getattr(self.model, "ddp_unused_parameters", False):
            kwargs["strategy"] = "ddp_find_unused_parameters_true"  # the defense's steps leave parameters out
        trainer = super().instantiate_trainer(**kwargs)
        if self.resume is not None:
            enable_last_checkpoint(trainer)
            trainer.callbacks.append(RunInCheckpoint(self.resume["config_hash"]))
        parser = self._parser(self.subcommand)
        config_yaml = self._config_yaml = self_contained_config(parser, cfg)
        trainer.callbacks.extend(
            [EpochTimer(), InterruptReport(config_yaml, self.tracking_uri), RunRecorder(config=yaml.safe_load(config_yaml), config_yaml=config_yaml,
                                       resumed=bool(cfg.tracking.run_id)),
             *self._audit_callbacks()]
        )
        return trainer

    def _check_data(self, stage: str) -> None:
        """Read the data and draw the split before the trainer starts, so that a missing dataset or an impossible
        split is one error and no MLflow run (Lightning creates it before it sets the data up). ``setup`` keeps
        what it built, so the trainer does not read the data again."""
        self.datamodule.prepare_data()
        self.datamodule.setup(stage)

    def before_fit(self) -> None:
        self._check_data("fit")
        if self.resume and self.resume.get("run_id") and self.tracking_uri is not None:
            splits = getattr(self.datamodule, "splits", None)
            check_same_split(self.tracking_uri, self.resume["run_id"], splits.digest() if splits is not None else None)

    def before_validate(self) -> None:
        self._check_data("validate")

    def after_fit(self) -> None:
        """Test the weights a user would ship on the non-member role, which triggers the audits."""
        if self.trainer.interrupted:
            return
        ckpt_path, weights = audited_weights(self.trainer)
        self._audited_checkpoint = str(Path(ckpt_path).resolve()) if ckpt_path else None
        publish(AuditResult(name="weights", tags={
            "audit.weights": weights, "audit.checkpoint": str(Path(ckpt_path).resolve()) if ckpt_path else "in-memory"}),
            self.trainer.loggers)
        if is_overridden("test_step", self.model):  # audits of models with no test (e.g. generative) hook fit
            # The last weights are tested as they are in memory (their checkpoint, when recorded, holds the same).
            self.trainer.test(self.model, datamodule=self.datamodule,
                              ckpt_path=ckpt_path if weights == "best_val_checkpoint" else None)
        self._print_summary()

    def before_test(self) -> None:
        self._check_data("test")
        ckpt_path = self._subconfig.get("ckpt_path")
        if not ckpt_path:
            rank_zero_warn("testing without --ckpt_path: the model's initial (untrained) weights are tested and audited")
        publish(AuditResult(name="weights", tags={
            "audit.weights": "checkpoint" if ckpt_path else "initial",
            "audit.checkpoint": str(Path(ckpt_path).resolve()) if ckpt_path else "none"}), self.trainer.loggers)
        self._audited_checkpoint = str(Path(ckpt_path).resolve()) if ckpt_path else None

    def after_test(self) -> None:
        self._print_summary()

    @rank_zero_only
    def _print_summary(self) -> None:
        rows, lines = summary_rows(self.trainer, self.model), []
        ckpt = self._audited_checkpoint
        if ckpt:
            lines.append(("checkpoint", ckpt))
            if self.subcommand == "fit":
                lines.append(("audit again", audit_command(self._config_yaml, ckpt)))
        mlflow_loggers = [lg for lg in self.trainer.loggers if isinstance(lg, MLFlowLogger)]
        if mlflow_loggers:
            lines.append(("mlflow run", f"{mlflow_loggers[0].run_id} @ {self.tracking_uri}"))
            if self.tracking_uri and self.tracking_uri.startswith("sqlite:///"):
                lines.append(("view", f"mlflow ui --backend-store-uri {self.tracking_uri}"))
        print_summary(rows, lines=lines)


def self_contained_config(parser: Any, cfg: Any) -> str:
    """The resolved config as YAML that re-runs the run on its own: ``compose:`` (paths relative to files that
    the logged copy is not next to) is dropped, as everything it composed is already expanded in it."""
    expanded = cfg.clone()
    expanded.compose = None
    data = yaml.safe_load(parser.dump(expanded, skip_none=False, skip_validation=True))
    data.pop("compose", None)
    return yaml.safe_dump(data, sort_keys=False)


def cli(args: Optional[Sequence[str]] = None, *, run: bool = True) -> PrivacyCLI:
    """Build (and by default run) the CLI from command-line arguments, after expanding ``compose:``."""
    silence_unactionable()
    show_project_log()
    argv = expand_compose(sys.argv[1:] if args is None else args)
    explicit = any(t == URI_FLAG or t.startswith(URI_FLAG + "=") for t in argv)
    return PrivacyCLI(argv, explicit_uri=explicit, run=run, config_files=config_files(
        sys.argv[1:] if args is None else args))


def config_files(argv: Sequence[str]) -> list[str]:
    """The ``--config`` files of a command line, as given."""
    args = list(argv)
    return [args[i + 1] if t == "--config" else t.split("=", 1)[1] for i, t in enumerate(args)
            if (t == "--config" and i + 1 < len(args)) or t.startswith("--config=")]


def main(args: Optional[Sequence[str]] = None) -> None:
    """Console entry point: bad input ends in one line on stderr and exit status 2."""
    from jsonargparse import ArgumentError

    UserInputError.last = None
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in PLATFORM_COMMANDS:
        return platform_command(argv)
    try:
        if argv[:1] == ["ui"]:  # not a LightningCLI subcommand: a light MLflow server on the local store
            from lightning_privacy.tracking.ui import serve

            sys.exit(serve(argv[1:]))
        cli(args)
    except ArgumentError as e:
        inner = UserInputError.last
        _exit_with(inner if inner is not None and str(inner) in str(e) else UserInputError(explain(str(e))))
    except UserInputError as e:
        _exit_with(e)
    except ValueError as e:
        inner = UserInputError.last
        if inner is not None and str(inner) in str(e):
            _exit_with(inner)
        raise


PLATFORM_COMMANDS = ("sweep", "report")


def platform_command(argv: list[str]) -> None:
    """``sweep`` and ``report`` parse their own arguments (LightningCLI does not know them)."""
    try:
        if argv[0] == "sweep":
            from lightning_privacy.sweep.runner import sweep_main

            code = sweep_main(argv[1:])
        else:
            from lightning_privacy.reports.report import report_main

            code = report_main(argv[1:])
    except UserInputError as e:
        _exit_with(e)
    if code:
        sys.exit(code)


def _exit_with(error: UserInputError) -> None:
    print(f"lightning-privacy: error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
