"""A trial's resolved config (parsed exactly as ``fit`` parses it, nothing instantiated) and its sweep hash."""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import yaml

from lightning_privacy.errors import UserInputError
from lightning_privacy.tracking.config_hash import config_hash, strip_outputs  # noqa: F401 (the sweep's hash)


class _Parsed(Exception):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__("parsed")
        self.config = config


def resolve_config(fit_args: Sequence[str]) -> dict[str, Any]:
    """The resolved config of ``lightning-privacy fit <fit_args>`` as plain data (``compose:`` expanded, files
    stacked, interpolations applied; ``seed_everything: true`` stays true: no random seed is drawn)."""
    from jsonargparse import ArgumentError

    from lightning_privacy.cli import PrivacyCLI, expand_compose
    from lightning_privacy.tracking.catalog import explain

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
    except ArgumentError as e:  # the CLI's parsers raise (exit_on_error=False)
        raise UserInputError(f"a trial's arguments do not parse ({' '.join(fit_args)}): {explain(str(e))}") from e
    except SystemExit as e:  # jsonargparse reports bad arguments by exiting
        text = err.getvalue()
        reason = text[text.find("error:"):].strip() if "error:" in text else text.strip()[-2000:]
        raise UserInputError(f"a trial's arguments do not parse ({' '.join(fit_args)}): {reason}") from e
    raise UserInputError("the trial's config could not be resolved")
