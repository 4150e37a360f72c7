"""``lightning-privacy sweep``: plan a sweep file's trials (resolve, hash, skip) and run the rest on Ray Tune."""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from lightning_privacy.errors import UserInputError
from lightning_privacy.sweep.resolve import config_hash, resolve_config
from lightning_privacy.sweep.spec import SweepSpec, Trial, load_sweep
from lightning_privacy.sweep.store import finished_run, prepare_store
from lightning_privacy.sweep.trial import run_trial

URI_FLAG = "--tracking.uri"


@dataclass
class PlannedTrial:
    """A trial with its hash, where it is tracked, and the FINISHED run that makes it skippable."""

    trial: Trial
    config_hash: str
    uri: str
    experiment: str
    finished_run: Optional[str] = None
    status: str = "pending"
    run_id: Optional[str] = None
    error: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)


def tracking_of(config: dict[str, Any], args: Sequence[str]) -> tuple[str, str]:
    """The tracking URI and experiment a fit with these args uses (the CLI's precedence)."""
    from lightning_privacy.tracking.mlflow import default_tracking_uri, resolve_tracking_uri

    tracking = config.get("tracking") or {}
    explicit = any(a == URI_FLAG or a.startswith(URI_FLAG + "=") for a in args)
    uri = resolve_tracking_uri(flag=tracking.get("uri") if explicit else None, env=os.environ.get("MLFLOW_TRACKING_URI"),
                               config=tracking.get("uri"), default=default_tracking_uri())
    return uri, str(tracking.get("experiment") or "lightning-privacy")


def plan(spec: SweepSpec, extra_args: Sequence[str] = ()) -> list[PlannedTrial]:
    """Resolve every trial's config (bad keys fail here, before anything runs), hash it, and look up its
    FINISHED run; the store and experiments are created once here, before any trial writes to them."""
    planned = []
    prepared: set[tuple[str, str]] = set()
    for trial in spec.trials(extra_args):
        config = resolve_config(trial.args)
        if (config.get("tracking") or {}).get("enabled") is False:
            raise UserInputError("a sweep needs tracking (tracking.enabled: true): skipping and reporting read the store")
        uri, experiment = tracking_of(config, trial.args)
        if (uri, experiment) not in prepared:
            prepare_store(uri, experiment)
            prepared.add((uri, experiment))
        h = config_hash(config)
        planned.append(PlannedTrial(trial=trial, config_hash=h, uri=uri, experiment=experiment,
                                    finished_run=finished_run(uri, experiment, h)))
    hashes = [p.config_hash for p in planned]
    if len(set(hashes)) != len(hashes):
        dupes = sorted({p.trial.name for p in planned if hashes.count(p.config_hash) > 1})
        raise UserInputError(f"trials {dupes} resolve to the same config: an axis does not change what is trained")
    return planned


# ---------------------------------------------------------------------------------------------- the driver
def _probe(address: str, timeout: float = 3.0) -> None:
    """An address with no Ray cluster behind it is an error in seconds (ray.init would retry for a minute)."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host:
        host, port = target, "10001" if address.startswith("ray://") else "6379"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as e:
        raise UserInputError(f"no Ray cluster answers at {address} ({e}); start one (`ray start --head` on the head "
                             "node, `ray start --address <head>:6379` on the others) or drop --address to run "
                             "on this machine") from e


def connect(address: Optional[str]) -> None:
    import logging

    import ray

    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                              "configure_logging": True}
    if address and address != "auto":
        _probe(address)
    try:
        ray.init(address=address or "local", **kwargs)
    except ConnectionError as e:
        raise UserInputError(f"no Ray cluster to attach to at {address!r} ({e}); start one with `ray start --head` "
                             "or drop --address") from e


def _progress_callback(planned: dict[str, PlannedTrial]) -> Any:
    from ray.tune import Callback

    def say(text: str) -> None:
        print(f"[sweep] {text}", flush=True)

    class Progress(Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            say(f"start    {trial.config['trial']['name']}")

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            say(f"retry    {trial.config['trial']['name']} (its first attempt failed)")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            p = planned[trial.config["trial"]["name"]]
            p.run_id = result.get("run_id") or p.run_id
            if result.get("state") == "running":
                say(f"running  {p.trial.name} run {p.run_id}")
            elif result.get("state") in ("finished", "skipped"):
                p.status = str(result["state"])

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            p = planned[trial.config["trial"]["name"]]
            say(f"{p.status:<8} {p.trial.name} run {p.run_id}")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            p = planned[trial.config["trial"]["name"]]
            p.status = "failed"
            say(f"failed   {p.trial.name} run {p.run_id}")

    return Progress()


def execute(spec: SweepSpec, planned: list[PlannedTrial], *, address: Optional[str] = None,
            max_retries: int = 1) -> None:
    """Run the trials that have no FINISHED run on Ray Tune; statuses, run ids and errors land in ``planned``."""
    from ray import tune

    todo = [p for p in planned if not p.finished_run]
    for p in planned:
        if p.finished_run:
            p.status, p.run_id = "skipped", p.finished_run
            print(f"[sweep] skipped  {p.trial.name} run {p.run_id} (FINISHED, same sweep.config_hash)", flush=True)
    if not todo:
        return
    cwd = Path.cwd().resolve()
    out = cwd / "outputs" / "sweeps" / spec.name
    trials = [{"name": p.trial.name, "args": list(p.trial.args), "hash": p.config_hash, "uri": p.uri,
               "experiment": p.experiment, "sweep": spec.name, "cwd": str(cwd), "cpus": spec.cpus,
               "setting": p.trial.setting(), "label": p.trial.label(), "log_dir": str(out / "logs")} for p in todo]
    by_name = {p.trial.name: p for p in todo}
    connect(address)
    import ray

    try:
        resources = {"cpu": spec.cpus, "gpu": spec.gpus}
        tuner = tune.Tuner(
            tune.with_resources(run_trial, resources),
            param_space={"trial": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent,
                                        trial_dirname_creator=lambda t: t.config["trial"]["name"][:100]),
            run_config=tune.RunConfig(name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                      storage_path=str(out / "ray"), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=max_retries),
                                      callbacks=[_progress_callback(by_name)]),
        )
        grid = tuner.fit()
        for result in grid:
            p = by_name[result.config["trial"]["name"]]
            p.run_id = (result.metrics or {}).get("run_id") or p.run_id
            if result.error is not None:
                p.status, p.error = "failed", error_line(result.error)
            elif p.status == "pending":
                p.status = (result.metrics or {}).get("state", "finished")
    finally:
        ray.shutdown()


def error_line(error: BaseException) -> str:
    """The line of a trial's error that says what happened (Ray wraps it in tracebacks of its own)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:  # the message, not the traceback's source line that raised it
        if re.search(r"fit exited with status -?\d+", line):
            return line
    return (lines[-1] if lines else repr(error))[:500]


def print_table(spec: SweepSpec, planned: list[PlannedTrial]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep {spec.name}")
    for column in ("trial", "status", "run id", "sweep.config_hash", "error"):
        table.add_column(column, overflow="fold")
    for p in planned:
        table.add_row(p.trial.label(), p.status, p.run_id or "-", p.config_hash, p.error or "")
    counts = {s: sum(p.status == s for p in planned) for s in ("finished", "skipped", "failed", "pending")}
    Console(width=200).print(table)
    for p in planned:
        if p.status == "failed":
            print(f"[sweep] error    {p.trial.name}: {p.error}", flush=True)
    print("[sweep] " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), flush=True)


def sweep_main(argv: Sequence[str]) -> int:
    """``lightning-privacy sweep --config FILE [--address A] [--full] [--dry-run] [-- fit args...]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="lightning-privacy sweep",
                                     description="Run a sweep file's grid of fits on Ray Tune (see README).")
    parser.add_argument("--config", required=True, type=Path, help="a sweep file, e.g. conf/sweeps/quickstart_demo.yaml")
    parser.add_argument("--address", default=None,
                        help="a running Ray cluster (host:6379, ray://host:10001, or auto); default: Ray on this machine")
    parser.add_argument("--variant", default=None, help="merge the sweep file's variants.<name> (e.g. full)")
    parser.add_argument("--full", action="store_const", const="full", dest="variant",
                        help="the sweep's paper protocol (its variants.full)")
    parser.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    parser.add_argument("--dry-run", action="store_true", help="list the trials, hashes and skips; run nothing")
    args, extra = parser.parse_known_args(list(argv))
    extra = [a for a in extra if a != "--"]
    spec = load_sweep(args.config, variant=args.variant)
    if args.address and args.address != "auto":
        _probe(args.address)  # before anything else: a wrong address is an error in seconds
    if args.max_concurrent:
        spec.max_concurrent = args.max_concurrent
    planned = plan(spec, extra)
    if args.dry_run:
        for p in planned:
            state = f"skip (run {p.finished_run})" if p.finished_run else "run"
            print(f"[sweep] {p.trial.name} {p.config_hash} {state}: fit {' '.join(p.trial.args)}", flush=True)
        return 0
    try:
        execute(spec, planned, address=args.address)
    except KeyboardInterrupt:
        print("[sweep] interrupted: finished runs are kept; rerun the same command to continue", flush=True)
    print_table(spec, planned)
    return 1 if any(p.status == "failed" for p in planned) else 0
