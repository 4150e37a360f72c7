"""A sweep file and its grid: one base experiment × axes of stacked config files, dotted values and seeds."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from lightning_privacy.errors import UserInputError

TOP_KEYS = {"name", "base", "experiment", "configs", "set", "grid", "seed_keys", "resources", "max_concurrent",
            "description", "variants"}
GRID_KEYS = {"configs", "values", "seeds"}


@dataclass(frozen=True)
class Trial:
    """One fit of a sweep: the CLI arguments after ``fit`` and the axis values that name it."""

    name: str
    args: tuple[str, ...]
    axes: tuple[tuple[str, Any], ...]

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.axes) or "(base)"

    def setting(self) -> str:
        """The axis values except the seed (``defense=reg model.init_args.r=0.5``): a report's column."""
        return " ".join(f"{k}={v}" for k, v in self.axes if k != "seed") or "base"


@dataclass
class SweepSpec:
    """A parsed ``conf/sweeps/*.yaml``; paths are resolved against the sweep file's folder."""

    name: str
    base: Path
    experiment: Optional[str] = None
    configs: list[Path] = field(default_factory=list)
    set: dict[str, Any] = field(default_factory=dict)
    config_axes: dict[str, list[list[Path]]] = field(default_factory=dict)
    value_axes: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    seed_keys: list[str] = field(default_factory=lambda: ["seed_everything"])
    cpus: float = 1.0
    gpus: float = 0.0
    max_concurrent: Optional[int] = None

    def trials(self, extra_args: Sequence[str] = ()) -> list[Trial]:
        """The grid's trials in a fixed order: config axes, then value axes, then seeds (the last varies fastest)."""
        config_axes = [(axis, [(_short(files), [a for f in files for a in ("--config", str(f))]) for files in choices])
                       for axis, choices in self.config_axes.items()]
        value_axes = [(key, [(v, [f"--{key}={cli_value(v)}"]) for v in values]) for key, values in self.value_axes.items()]
        if self.seeds:
            value_axes.append(("seed", [(s, [f"--{k}={s}" for k in self.seed_keys]) for s in self.seeds]))
        axes = config_axes + value_axes
        # Files first (base, fixed, the axes' files), then values (fixed, the axes'), then the caller's extra args:
        # later wins, so an axis beats the base and the fixed values, and the command line beats all.
        files = ["--config", str(self.base)] + [a for f in self.configs for a in ("--config", str(f))]
        fixed = [f"--{k}={cli_value(v)}" for k, v in self.set.items()]
        if self.experiment:
            fixed.append(f"--tracking.experiment={self.experiment}")
        trials = []
        n_files = len(config_axes)
        for combo in itertools.product(*(choices for _, choices in axes)):
            values = tuple((axis, value) for (axis, _), (value, _) in zip(axes, combo))
            axis_files = [a for _, part in combo[:n_files] for a in part]
            axis_values = [a for _, part in combo[n_files:] for a in part]
            args = files + axis_files + fixed + axis_values + list(extra_args)
            name = "_".join(f"{_slug(k)}={_slug(v)}" for k, v in values) or "base"
            trials.append(Trial(name=name, args=tuple(args), axes=values))
        return trials


def cli_value(value: Any) -> str:
    """A value as one command-line token jsonargparse reads back unchanged (strings as they are, else JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def _short(files: list[Path]) -> str:
    return "+".join(f.stem for f in files)


def _slug(value: Any) -> str:
    text = str(value).rsplit(".", 1)[-1] if isinstance(value, str) and value.count(".") > 1 else str(value)
    return "".join(c if c.isalnum() or c in "-.+" else "-" for c in text)


def _files(value: Any, where: str, root: Path) -> list[Path]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise UserInputError(f"{where} must be a config file path or a non-empty list of them, got {value!r}")
    paths = [Path(os.path.normpath(root / i)) for i in items]
    for p in paths:
        if not p.is_file():
            raise UserInputError(f"{where}: config file {p} does not exist (paths are relative to the sweep file)")
    return paths


def _choices(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise UserInputError(f"{where} must be a non-empty list of choices, got {value!r}")
    return value


def load_sweep(path: Path, *, variant: Optional[str] = None) -> SweepSpec:
    """Read and check a sweep file: unknown keys, missing config files and empty axes are errors.
    ``variant`` (e.g. ``full``) merges ``variants.<name>`` over the file's top level (one level deep for
    ``set``, ``grid`` and ``resources``)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"sweep file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserInputError(f"sweep file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise UserInputError(f"sweep file {path} must be a mapping of sweep settings")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise UserInputError(f"sweep file {path}: unknown key(s) {sorted(unknown)}; expected some of {sorted(TOP_KEYS)}")
    variants = data.pop("variants", None) or {}
    if variant is not None:
        if variant not in variants:
            raise UserInputError(f"sweep file {path} has no variant {variant!r}; it has {sorted(variants) or 'none'}")
        for key, value in variants[variant].items():
            if key in ("set", "grid", "resources") and isinstance(data.get(key), dict) and isinstance(value, dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
    root = path.parent
    if "base" not in data:
        raise UserInputError(f"sweep file {path} names no base experiment (`base: ../experiments/<name>.yaml`)")
    base = _files(data["base"], "base", root)
    if len(base) != 1:
        raise UserInputError(f"sweep file {path}: base must be one config file")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise UserInputError(f"sweep file {path}: grid must be a mapping with some of {sorted(GRID_KEYS)}")
    unknown = set(grid) - GRID_KEYS
    if unknown:
        raise UserInputError(f"sweep file {path}: unknown grid axis kind(s) {sorted(unknown)}; expected "
                             f"{sorted(GRID_KEYS)} (configs: {{axis: [files]}}, values: {{dotted.key: [values]}}, "
                             "seeds: [ints])")
    config_axes = {axis: [_files(c, f"grid.configs.{axis}", root) for c in _choices(choices, f"grid.configs.{axis}")]
                   for axis, choices in (grid.get("configs") or {}).items()}
    value_axes = {str(key): _choices(values, f"grid.values.{key}")
                  for key, values in (grid.get("values") or {}).items()}
    for key in value_axes:
        if key.startswith("-") or not key.replace("_", "").replace(".", "").isalnum():
            raise UserInputError(f"sweep file {path}: grid.values key {key!r} must be a dotted config key "
                                 "(e.g. model.init_args.r)")
    seeds = grid.get("seeds") or []
    if "seeds" in grid:
        seeds = _choices(seeds, "grid.seeds")
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise UserInputError(f"sweep file {path}: grid.seeds must be integers, got {seeds!r}")
    if not (config_axes or value_axes or seeds):
        raise UserInputError(f"sweep file {path}: the grid is empty; give at least one axis under grid: "
                             "configs, values or seeds")
    resources = data.get("resources") or {}
    unknown = set(resources) - {"cpus", "gpus"}
    if unknown:
        raise UserInputError(f"sweep file {path}: unknown resource(s) {sorted(unknown)}; expected cpus, gpus")
    configs = [p for c in (data.get("configs") or []) for p in _files(c, "configs", root)]
    set_values = data.get("set") or {}
    if not isinstance(set_values, dict):
        raise UserInputError(f"sweep file {path}: set must be a mapping of dotted keys to values")
    max_concurrent = data.get("max_concurrent")
    return SweepSpec(
        name=str(data.get("name") or path.stem), base=base[0], experiment=data.get("experiment"), configs=configs,
        set=dict(set_values), config_axes=config_axes, value_axes=value_axes, seeds=list(seeds),
        seed_keys=list(data.get("seed_keys") or ["seed_everything"]), cpus=float(resources.get("cpus", 1)),
        gpus=float(resources.get("gpus", 0)), max_concurrent=int(max_concurrent) if max_concurrent else None)
