"""Registry fixtures: a fresh SQLite registry per test, copied from one made per session (creating
MLflow's schema takes seconds; copying it, milliseconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory) -> Path:
    from tsfm.registry.mlflow_registry import _client, normalize_uri

    db = tmp_path_factory.mktemp("registry-template") / "mlflow.db"
    _client(normalize_uri(str(db)), write=True)  # creates the schema
    return db


@pytest.fixture
def registry_uri(tmp_path, _template_db, monkeypatch) -> str:
    """``sqlite:///<tmp>/registry/mlflow.db``, schema made, nothing registered; also $TSFM_REGISTRY_URI."""
    db = tmp_path / "registry" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy2(_template_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("TSFM_REGISTRY_URI", uri)
    return uri
