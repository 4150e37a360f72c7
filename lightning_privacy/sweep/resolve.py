"""A trial's resolved config (parsed exactly as ``fit`` parses it, nothing instantiated) and its sweep hash."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Mapping, Sequence

import yaml

from lightning_privacy.canonical import canonical_hash
from lightning_privacy.errors import UserInputError

# Keys that say where results go, not what is trained: left out of a trial's hash (matched by their last name).
OUTPUT_KEYS = frozenset({"default_root_dir", "dirpath", "logger", "cache_dir", "save_dir"})
IGNORED_TOP = frozenset({"tracking", "compose", "config", "print_config"})


class _Parsed(Exception):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__("parsed")
        self.config = config


def resolve_config(fit_args: Sequence[str]) -> dict[str, Any]:
    """The resolved config of ``lightning-privacy fit <fit_args>`` as plain data (``compose:`` expanded, files
    stacked, interpolations applied; ``seed_everything: true`` stays true: no random seed is drawn)."""
    from lightning_privacy.cli import PrivacyCLI, expand_compose

    class _Resolver(PrivacyCLI):
        def _set_seed(self) -> None:  # resolving must not draw a random seed
            pass

        def before_instantiate_classes(self) -> None:
            cfg = self._subconfig
            text = self._parser(self.subcommand).dump(cfg, skip_none=False, skip_validation=True)
            raise _Parsed(yaml.safe_load(text))

    UserInputError.last = None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            _Resolver(["fit", *expand_compose(fit_args)])
    except _Parsed as parsed:
        return parsed.config
    except SystemExit as e:  # jsonargparse reports bad arguments by exiting
        text = err.getvalue()
        reason = text[text.find("error:"):].strip() if "error:" in text else text.strip()[-2000:]
        raise UserInputError(f"a trial's arguments do not parse ({' '.join(fit_args)}): {reason}") from e
    raise UserInputError("the trial's config could not be resolved")


def strip_outputs(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without ``tracking.*``, loggers and output paths (top-level keys in ``IGNORED_TOP``, any key in
    ``OUTPUT_KEYS``)."""

    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items() if k not in OUTPUT_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip({k: v for k, v in copy.deepcopy(dict(config)).items() if k not in IGNORED_TOP})


def config_hash(config: Mapping[str, Any]) -> str:
    """``sweep.config_hash``: the canonical hash (the model bank's serialisation) of the config minus outputs."""
    return canonical_hash(strip_outputs(config))
