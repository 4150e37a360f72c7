"""The local MLflow store: what a ``--tracking.uri`` means, and creating a sqlite store safely on first use."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock

from lightning_privacy.errors import UserInputError

SQLITE = "sqlite:///"
STORE_FILE = "mlflow.db"


def normalize_uri(uri: str) -> str:
    """A plain directory (``./mlruns``) is the sqlite store ``<dir>/mlflow.db``; a ``file:`` URI (MLflow's file
    store, in maintenance mode) is refused in one line unless ``MLFLOW_ALLOW_FILE_STORE=true``; other URIs pass."""
    if "://" not in uri and not uri.startswith("file:"):
        path = Path(uri).expanduser()
        if path.suffix == ".db":
            raise UserInputError(f"--tracking.uri {uri} looks like a sqlite file: write sqlite:///{path.resolve()}")
        return f"{SQLITE}{path.resolve() / STORE_FILE}"
    if uri.startswith("file:") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        folder = Path(urlparse(uri).path or ".")
        raise UserInputError(
            f"--tracking.uri {uri}: MLflow's file store is in maintenance mode; write the directory itself "
            f"(--tracking.uri {folder}, a sqlite store inside it) or sqlite:///{folder / STORE_FILE}; "
            "to migrate old runs see `mlflow migrate-filestore`")
    return uri


def ensure_store(uri: str) -> None:
    """Create a ``sqlite:///`` store (its folder, tables and migrations) under a file lock next to it, so that
    several processes starting at once on a fresh store do not race on MLflow's table creation."""
    if not uri.startswith(SQLITE):
        return
    db = Path(uri[len(SQLITE):])  # sqlite:////abs/file or sqlite:///relative/file
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock"):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        artifacts = (db.parent / "artifacts").resolve().as_uri()
        SqlAlchemyStore(uri, artifacts).engine.dispose()
