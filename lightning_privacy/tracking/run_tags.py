"""Tags that say what a run trained (defense, DP and its ε, dataset, the defense's key hyperparameters as
``hp.*``), and params whose keys line up across the runs of a defense family (an unset optional block logs its
keys as None; callbacks by class name)."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import Any, Mapping

DP_NAMES = {"record": "DP-SGD", "class": "class-DP", "subclass": "subclass-DP"}
DP_KEY_HPARAMS = ("target_epsilon", "noise_multiplier", "max_grad_norm")
"""DP-SGD's key hyperparameters, tagged ``hp.dp.<name>`` on a DP run (``group_sample_rate`` too at class levels)."""
HP_PREFIX = "hp."


def _tag_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_tag_value(v) for v in value)
    return str(value)


def hparam_tags(model: Any) -> dict[str, str]:
    """``hp.<name>`` for each of the defense's ``key_hparams`` (its configured value, from ``hparams``), and
    ``hp.dp.<name>`` for DP-SGD's when ``dp`` is set (``hp.dp.noise_multiplier`` is ``solved`` when the target ε
    sets it; the solved value is the metric ``dp/noise_multiplier``)."""
    hparams = getattr(model, "hparams", {}) or {}
    tags: dict[str, str] = {}
    for name in getattr(type(model), "key_hparams", ()):
        value = hparams[name] if name in hparams else getattr(model, name)
        tags[f"{HP_PREFIX}{name}"] = _tag_value(value)
    dp = getattr(model, "dp", None)
    if dp is not None and dataclasses.is_dataclass(dp):
        names = DP_KEY_HPARAMS + (("group_sample_rate",) if getattr(dp, "level", "record") != "record" else ())
        for name in names:
            value = getattr(dp, name)
            if value is None:
                value = "solved" if name == "noise_multiplier" else "none"
            tags[f"{HP_PREFIX}dp.{name}"] = _tag_value(value)
    return tags


def run_tags(model: Any, datamodule: Any) -> dict[str, str]:
    """``defense`` (``ERM + DP-SGD`` when DP trains it), ``dp`` (on/off), ``dp.level``, ``dp.epsilon`` (the
    target ε, or ``reported`` when the noise is fixed), ``dp.delta``, ``dataset``, and the key hyperparameters
    ``hp.*`` (``hparam_tags``)."""
    defense = type(model).__name__
    dp = getattr(model, "dp", None)
    tags = {"dataset": str(getattr(datamodule, "dataset_name", type(datamodule).__name__)), "dp": "off"}
    if dp is not None and dataclasses.is_dataclass(dp):
        level = str(getattr(dp, "level", "record"))
        target = getattr(dp, "target_epsilon", None)
        tags.update({"dp": "on", "dp.level": level, "dp.delta": f"{getattr(dp, 'delta', '')}",
                     "dp.epsilon": f"{target:g}" if target is not None else "reported"})
        defense = f"{defense} + {DP_NAMES.get(level, 'DP')}"
    tags["defense"] = defense
    return {**tags, **hparam_tags(model)}


def _optional_dataclass(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if type(None) in typing.get_args(annotation) and len(args) == 1 and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _class_hints(class_path: str) -> dict[str, Any]:
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return typing.get_type_hints(cls.__init__)
    except Exception:  # a class the parser accepted but whose hints do not resolve here: no expansion
        return {}


def _blank(dc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(dc):
        nested = f.type if dataclasses.is_dataclass(f.type) else None
        out[f.name] = _blank(nested) if nested else None
    return out


def aligned_config(config: Any) -> Any:
    """``config`` with every unset optional dataclass argument (``model.init_args.dp: null``) replaced by its
    fields set to None, and every list of ``class_path`` entries (``trainer.callbacks``) keyed by class name."""
    if isinstance(config, list):
        if config and all(isinstance(c, Mapping) and "class_path" in c for c in config):
            out: dict[str, Any] = {}
            for entry in config:
                name = str(entry["class_path"]).rpartition(".")[2]
                key, n = name, 2
                while key in out:
                    key, n = f"{name}_{n}", n + 1
                out[key] = aligned_config(dict(entry.get("init_args") or {}))
            return out
        return config
    if not isinstance(config, Mapping):
        return config
    out = {k: aligned_config(v) for k, v in config.items()}
    if "class_path" in out and isinstance(out.get("init_args"), Mapping):
        hints = _class_hints(str(out["class_path"]))
        init_args = dict(out["init_args"])
        for key, value in init_args.items():
            dc = _optional_dataclass(hints.get(key)) if value is None else None
            if dc is not None:
                init_args[key] = _blank(dc)
        out["init_args"] = init_args
    return out
