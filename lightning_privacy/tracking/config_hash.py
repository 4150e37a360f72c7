"""The hash of what a fit trains: its resolved config minus tracking, loggers and output paths."""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

from lightning_privacy.canonical import canonical_hash

# Keys that say where results go, not what is trained: left out of a config's hash (matched by their last name).
OUTPUT_KEYS = frozenset({"default_root_dir", "dirpath", "logger", "cache_dir", "save_dir"})
IGNORED_TOP = frozenset({"tracking", "compose", "config", "print_config"})


def strip_outputs(config: Mapping[str, Any], also: Iterable[str] = ()) -> dict[str, Any]:
    """``config`` without ``tracking.*``, loggers and output paths (top-level keys in ``IGNORED_TOP`` and ``also``,
    any key in ``OUTPUT_KEYS``)."""
    top = IGNORED_TOP | set(also)

    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items() if k not in OUTPUT_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip({k: v for k, v in copy.deepcopy(dict(config)).items() if k not in top})


def config_hash(config: Mapping[str, Any], also: Iterable[str] = ()) -> str:
    """The canonical hash (the model bank's serialisation) of ``strip_outputs(config, also)``."""
    return canonical_hash(strip_outputs(config, also))
