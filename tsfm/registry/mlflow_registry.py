"""The model registry on MLflow: register exported checkpoints as versions, move aliases, resolve
``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` to a local checkpoint directory.

Backend: any MLflow tracking/registry URI; by default a SQLite database ``<run root>/mlflow.db``
(``logs/mlflow.db``, or ``$PROJECT_ROOT/logs/mlflow.db``) with the artifacts in
``mlflow-artifacts/`` beside it, or ``$TSFM_REGISTRY_URI``. Everything works offline.

A registration is one MLflow run (experiment ``tsfm-registry``) that holds the checkpoint
directory as its artifact ``model/``, the metrics as run metrics and the lineage as run tags and
``lineage/`` artifacts; then one model version whose source is that artifact, tagged with the
family, the parameter count, the metrics and the lineage. The version is created last and
anything made before it is removed if a step fails, so a failed registration leaves nothing.
Version numbers are allocated under a file lock beside a SQLite database (plus MLflow's own
retry), and every database call retries, with backoff, while SQLite reports "database is locked".

MLflow is imported only when a function here needs it, so ``import tsfm`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tsfm.registry import lineage as lin
from tsfm.registry.errors import RegistryError, RegistryLocked, RegistryNotFound

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEME = "models:/"
ENV_URI = "TSFM_REGISTRY_URI"
ENV_LOCK_TIMEOUT = "TSFM_REGISTRY_LOCK_TIMEOUT"
ENV_CACHE = "TSFM_REGISTRY_CACHE"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlflow-artifacts"
EXPERIMENT = "tsfm-registry"
MODEL_ARTIFACT = "model"
LINEAGE_ARTIFACT = "lineage"
DEFAULT_LOCK_TIMEOUT = 60.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# version tags: tsfm.* describe the checkpoint, metric.* its scores, lineage.* where it came from
TAG_FAMILY, TAG_PARAMS, TAG_SHA256, TAG_BYTES = "tsfm.family", "tsfm.params", "tsfm.sha256", "tsfm.weights_bytes"
TAG_SOURCE = "tsfm.registered_from"
REGISTER_HINT = ("register a model first: python -m tsfm.registry register <run dir or export dir> --name NAME, "
                 "or train with registry=mlflow")


# -- where the registry is ---------------------------------------------------------------------
def default_uri(root: str | Path | None = None) -> str:
    """``$TSFM_REGISTRY_URI``, else ``sqlite:///<root>/mlflow.db`` with ``root`` the run root
    (``paths.log_dir``: ``$PROJECT_ROOT/logs``, default ``./logs``)."""
    env = os.environ.get(ENV_URI)
    if env and root is None:
        return normalize_uri(env)
    if root is None:
        root = Path(os.environ.get("PROJECT_ROOT", ".")) / "logs"
    return normalize_uri(str(Path(root) / DB_NAME))


def normalize_uri(uri: str | Path | None) -> str:
    """An MLflow URI with a SQLite path made absolute; a plain path names a database file (``*.db``)
    or a directory holding ``mlflow.db``; None is :func:`default_uri`."""
    if uri is None or str(uri) == "":
        return default_uri()
    text = str(uri)
    if text.startswith("sqlite:///"):
        path, _, query = text[len("sqlite:///"):].partition("?")
        if path and path != ":memory:":
            text = "sqlite:///" + str(Path(path).expanduser().absolute()) + (f"?{query}" if query else "")
        return text
    if "://" in text or text.startswith(("databricks", "file:")):
        return text
    p = Path(text).expanduser().absolute()
    return "sqlite:///" + str(p if p.suffix == ".db" else p / DB_NAME)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other backends)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def lock_timeout_s(value: float | None = None) -> float:
    if value is not None:
        return float(value)
    return float(os.environ.get(ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT))


# -- references --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """``NAME``, ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME/latest`` (with or without ``models:/``)."""

    name: str
    version: int | None = None
    alias: str | None = None
    latest: bool = False

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        text = ref[len(SCHEME):] if ref.startswith(SCHEME) else ref
        if not text:
            raise ValueError(f"{ref!r}: empty model reference; use models:/NAME@ALIAS or models:/NAME/VERSION")
        if "/" in text:
            name, _, rest = text.partition("/")
            if rest == "latest":
                return cls(name, latest=True)
            if not rest.isdigit():
                raise ValueError(f"{ref!r}: the version after '/' must be a number or 'latest'; use "
                                 "models:/NAME/VERSION or models:/NAME@ALIAS")
            return cls(name, version=int(rest))
        if "@" in text:
            name, _, alias = text.rpartition("@")
            if not name or not alias:
                raise ValueError(f"{ref!r}: use models:/NAME@ALIAS")
            return cls(name, alias=alias)
        return cls(text)

    def __str__(self) -> str:
        if self.alias:
            return f"{SCHEME}{self.name}@{self.alias}"
        if self.version is not None:
            return f"{SCHEME}{self.name}/{self.version}"
        return f"{SCHEME}{self.name}" + ("/latest" if self.latest else "")


@dataclass
class VersionInfo:
    """One registered model version as tsfm sees it."""

    name: str
    version: int
    aliases: list[str]
    source: str
    run_id: str | None
    created: float  # seconds since the epoch
    description: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.tags.get(TAG_FAMILY, "?")

    @property
    def params(self) -> int | None:
        value = self.tags.get(TAG_PARAMS)
        return int(value) if value and value.isdigit() else None

    @property
    def metrics(self) -> dict[str, float]:
        out = {}
        for k, v in self.tags.items():
            if k.startswith("metric."):
                with contextlib.suppress(ValueError):
                    out[k[len("metric."):]] = float(v)
        return out

    @property
    def lineage(self) -> dict[str, str]:
        return {k[len("lineage."):]: v for k, v in self.tags.items() if k.startswith("lineage.")}

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.name}/{self.version}"


@dataclass
class ModelInfo:
    """One registered model: its versions (oldest first) and aliases."""

    name: str
    versions: list[VersionInfo]
    aliases: dict[str, int]
    description: str = ""

    @property
    def latest(self) -> VersionInfo | None:
        return self.versions[-1] if self.versions else None


# -- MLflow plumbing ---------------------------------------------------------------------------
def _mlflow():
    """Import MLflow quietly and offline (no telemetry, no banner logs)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_INSECURE_TLS", "false")
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def _is_locked(exc: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).lower()
        if "database is locked" in text or "database table is locked" in text or "sqlite_busy" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


def _locked_error(uri: str, what: str, waited: float) -> RegistryLocked:
    db = sqlite_path(uri)
    where = f"the registry database {db}" if db else f"the registry {uri}"
    return RegistryLocked(
        f"{what}: {where} is locked by another process (waited {waited:.0f} s). Retry when the other writer "
        f"is done (another registration, or a program holding the database open in a transaction), or wait "
        f"longer with {ENV_LOCK_TIMEOUT}=<seconds>. Nothing was registered."
    )


def _retry(fn: Callable[[], T], *, uri: str, what: str, timeout: float) -> T:
    """``fn()``, retried with jittered exponential backoff while SQLite says the database is locked."""
    start = time.monotonic()
    delay = 0.05
    while True:
        try:
            return fn()
        except Exception as e:
            if not _is_locked(e):
                raise
            waited = time.monotonic() - start
            if waited + delay > timeout:
                raise _locked_error(uri, what, waited) from e
            log.debug("%s: database locked, retrying in %.2f s", what, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)


def _wait_for_sqlite(db: Path, *, write: bool, uri: str, timeout: float) -> None:
    """Fail fast with :class:`RegistryLocked` if another connection keeps the database locked."""
    try:
        con = sqlite3.connect(str(db), timeout=timeout)
    except sqlite3.Error as e:
        raise RegistryError(f"cannot open the registry database {db}: {e}") from e
    start = time.monotonic()
    try:
        if write:
            con.execute("BEGIN IMMEDIATE")
            con.rollback()
        else:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as e:
        if _is_locked(e):
            raise _locked_error(uri, "register" if write else "read", time.monotonic() - start) from e
        raise RegistryError(f"the registry database {db} is not usable: {e}") from e
    finally:
        con.close()


@contextlib.contextmanager
def _file_lock(db: Path | None, uri: str, timeout: float) -> Iterator[None]:
    """An exclusive lock on ``<db>.lock`` (serialises tsfm writers of one SQLite registry)."""
    if db is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's own locking and MLflow's retries remain
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a+") as f:
        start, delay = time.monotonic(), 0.01
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > timeout:
                    raise _locked_error(uri, "register", time.monotonic() - start) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


_READY: set[str] = set()
_READY_LOCK = threading.Lock()


def _missing_message(uri: str, db: Path) -> str:
    return (f"no model registry at {db} (registry URI {uri}): the database does not exist yet, nothing has been "
            f"registered there. To create it, {REGISTER_HINT}; or point at another registry with --uri / "
            f"${ENV_URI} / registry.uri.")


def _client(uri: str | None, *, write: bool, lock_timeout: float | None = None):
    """An ``MlflowClient`` on ``uri`` (tracking and registry); for reads the database must exist."""
    uri = normalize_uri(uri)
    timeout = lock_timeout_s(lock_timeout)
    db = sqlite_path(uri)
    if db is not None:
        if not write and (not db.is_file() or db.stat().st_size == 0):
            raise RegistryNotFound(_missing_message(uri, db))
        if write:
            db.parent.mkdir(parents=True, exist_ok=True)
        _wait_for_sqlite(db, write=write, uri=uri, timeout=timeout)
    mlflow = _mlflow()
    with _READY_LOCK:
        ready = uri in _READY
    if ready:
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    with _file_lock(db, uri, timeout):  # the first use creates the schema: one process at a time

        def make():
            client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_registered_models(max_results=1)
            return client

        client = _retry(make, uri=uri, what="open registry", timeout=timeout)
    with _READY_LOCK:
        _READY.add(uri)
    return client


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"registered model name {name!r}: use letters, digits and . _ + - (starting with a letter "
                         "or digit), e.g. chronos2-mini")
    return name


def _version_info(mv) -> VersionInfo:
    return VersionInfo(name=mv.name, version=int(mv.version), aliases=sorted(mv.aliases or []), source=mv.source,
                       run_id=mv.run_id, created=(mv.creation_timestamp or 0) / 1000.0,
                       description=mv.description or "", tags=dict(mv.tags or {}))


def _versions(client, name: str) -> list[VersionInfo]:
    out, token = [], None
    while True:
        page = client.search_model_versions(f"name='{name}'", max_results=1000, page_token=token)
        out.extend(_version_info(mv) for mv in page)
        token = getattr(page, "token", None)
        if not token:
            break
    return sorted(out, key=lambda v: v.version)


def _registered_models(client) -> list:
    out, token = [], None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break
    return sorted(out, key=lambda m: m.name)


def _model_info(client, rm) -> ModelInfo:
    aliases = {a: int(v) for a, v in (getattr(rm, "aliases", None) or {}).items()}
    versions = _versions(client, rm.name)
    for v in versions:
        v.aliases = sorted(a for a, n in aliases.items() if n == v.version)
    return ModelInfo(rm.name, versions, aliases, rm.description or "")


def _model(client, name: str) -> ModelInfo | None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return None  # not a name tsfm registers (nor one a search filter can quote)
    found = [m for m in client.search_registered_models(filter_string=f"name='{name}'") if m.name == name]
    return _model_info(client, found[0]) if found else None


def _summary(info: ModelInfo) -> str:
    vs = ", ".join(str(v.version) for v in info.versions) or "none"
    al = ", ".join(f"{a} -> {v}" for a, v in sorted(info.aliases.items())) or "none"
    return f"versions: {vs}; aliases: {al}"


def _not_found_name(client, uri: str, name: str) -> RegistryNotFound:
    names = [m.name for m in _registered_models(client)]
    known = ", ".join(names) if names else f"none (the registry is empty; {REGISTER_HINT})"
    return RegistryNotFound(f"no registered model named {name!r} in the registry {uri}; registered models: {known}")


def _lookup(client, uri: str, ref: ModelRef) -> tuple[ModelInfo, VersionInfo]:
    info = _model(client, ref.name)
    if info is None:
        raise _not_found_name(client, uri, ref.name)
    if ref.alias is not None:
        if ref.alias not in info.aliases:
            raise RegistryNotFound(f"registered model {ref.name!r} has no alias {ref.alias!r} (registry {uri}); "
                                   f"{_summary(info)}. Set one with: python -m tsfm.registry promote {ref.name} "
                                   f"VERSION --alias {ref.alias}")
        number = info.aliases[ref.alias]
    elif ref.version is not None:
        number = ref.version
    else:
        if not info.versions:
            raise RegistryNotFound(f"registered model {ref.name!r} has no versions (registry {uri})")
        number = info.versions[-1].version
    match = [v for v in info.versions if v.version == number]
    if not match:
        raise RegistryNotFound(f"registered model {ref.name!r} has no version {number} (registry {uri}); "
                               f"{_summary(info)}")
    return info, match[0]


# -- register ----------------------------------------------------------------------------------
def _experiment_id(client, uri: str, experiment: str, timeout: float) -> str:
    db = sqlite_path(uri)
    artifacts = (db.parent / ARTIFACTS_DIR).as_uri() if db is not None else None

    def get_or_create() -> str:
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return client.create_experiment(experiment, artifact_location=artifacts)
        except Exception as e:
            if _error_code(e) == "RESOURCE_ALREADY_EXISTS":  # another process created it just now
                return client.get_experiment_by_name(experiment).experiment_id
            raise

    return _retry(get_or_create, uri=uri, what="register", timeout=timeout)


def _local_artifact_path(artifact_uri: str) -> Path | None:
    """The local directory of a ``file:`` (or plain path) artifact URI; None for remote stores."""
    if artifact_uri.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path))
    if "://" not in artifact_uri and ":" not in artifact_uri.split("/")[0]:
        return Path(artifact_uri)
    return None


def _tag_value(value: Any, limit: int = 5000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 20] + "...(truncated)"


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    """Tags from a dict: scalars as text, nested values as JSON (long values truncated; the full
    lineage is in the ``lineage/lineage.json`` artifact)."""
    return {f"{prefix}{k}": _tag_value(v) for k, v in values.items() if v is not None and not k.startswith("_")}


def register(
    export_dir: str | Path,
    name: str,
    *,
    metrics: dict[str, float] | None = None,
    lineage: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    alias: str | None = None,
    description: str | None = None,
    uri: str | None = None,
    run_dir: str | Path | None = None,
    discover_metrics: bool = True,
    experiment: str = EXPERIMENT,
    lock_timeout: float | None = None,
) -> int:
    """Register a checkpoint directory as a new version of ``name``; returns the version number.

    ``export_dir``: a checkpoint directory (``config.json`` + ``model.safetensors``) or a training run
    directory (its ``export/`` is registered). ``metrics`` / ``lineage`` add to (and win over) what
    is read from the files (:func:`tsfm.registry.lineage.collect`): the corpus fingerprints, the git
    commit and, from the run directory, the Hydra config, the parent checkpoint and (with
    ``discover_metrics``) the final evaluation's scores (``final_eval/results.json``, relative to
    Seasonal Naive) and the last lite-benchmark averages. ``run_dir``: the run the checkpoint came
    from, when it is not the export's parent. ``alias``: set on the new version. Either the version
    exists afterwards with its artifact, or nothing does.
    """
    name = _check_name(name)
    uri = normalize_uri(uri)
    timeout = lock_timeout_s(lock_timeout)
    ckpt = lin.checkpoint_dir(export_dir)
    family = lin.family_of(ckpt)
    weights = ckpt / lin.WEIGHTS
    run = Path(run_dir).resolve() if run_dir is not None else lin.run_dir_of(ckpt)
    found_metrics, found_lineage = lin.collect(ckpt, run, metrics=discover_metrics)
    all_metrics = {k: float(v) for k, v in {**found_metrics, **(metrics or {})}.items()}
    all_lineage = {**found_lineage, **(lineage or {})}
    corpus_detail = all_lineage.pop("corpus_sub_datasets", None)
    version_tags = {
        TAG_FAMILY: family,
        TAG_PARAMS: str(lin.parameter_count(weights)),
        TAG_BYTES: str(weights.stat().st_size),
        TAG_SHA256: lin.sha256(weights),
        TAG_SOURCE: str(ckpt),
        **_flat("metric.", {k: repr(v) for k, v in all_metrics.items()}),
        **_flat("lineage.", all_lineage),
        **(tags or {}),
    }

    client = _client(uri, write=True, lock_timeout=timeout)
    from mlflow.entities import Metric, RunTag

    db = sqlite_path(uri)
    run_id: str | None = None
    artifact_dir: Path | None = None
    created_model = False
    version: int | None = None
    try:
        exp_id = _experiment_id(client, uri, experiment, timeout)
        run_tags = {"mlflow.runName": f"register {name}", "tsfm.registered_model": name, **version_tags}
        if all_lineage.get("git_commit"):
            run_tags["mlflow.source.git.commit"] = str(all_lineage["git_commit"])
        mlrun = _retry(lambda: client.create_run(exp_id, tags={k: v for k, v in run_tags.items() if k != "mlflow.runName"},
                                                 run_name=f"register {name}"),
                       uri=uri, what="register", timeout=timeout)
        run_id = mlrun.info.run_id
        artifact_dir = _local_artifact_path(mlrun.info.artifact_uri)
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, 0) for k, v in all_metrics.items()]
        if batch:
            _retry(lambda: client.log_batch(run_id, metrics=batch, tags=[RunTag("tsfm.metrics", "logged")]),
                   uri=uri, what="register", timeout=timeout)
        client.log_artifacts(run_id, str(ckpt), MODEL_ARTIFACT)
        with tempfile.TemporaryDirectory(prefix="tsfm-lineage-") as tmp:
            full = {**all_lineage, "metrics": all_metrics, "family": family, "params": int(version_tags[TAG_PARAMS])}
            if corpus_detail is not None:
                full["corpus_sub_datasets"] = corpus_detail
            Path(tmp, "lineage.json").write_text(json.dumps(full, indent=1, sort_keys=True, default=str))
            if run is not None:
                for f in ("config.yaml", "overrides.yaml"):
                    if (run / ".hydra" / f).is_file():
                        shutil.copy2(run / ".hydra" / f, Path(tmp, f))
            client.log_artifacts(run_id, tmp, LINEAGE_ARTIFACT)
        _retry(lambda: client.set_terminated(run_id, "FINISHED"), uri=uri, what="register", timeout=timeout)
        source = f"{mlrun.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"

        with _file_lock(db, uri, timeout):  # version numbers: one tsfm writer at a time
            if _retry(lambda: _model(client, name), uri=uri, what="register", timeout=timeout) is None:
                try:
                    _retry(lambda: client.create_registered_model(name), uri=uri, what="register", timeout=timeout)
                    created_model = True
                except Exception as e:
                    if _error_code(e) != "RESOURCE_ALREADY_EXISTS":  # another MLflow client made it meanwhile
                        raise
            mv = _retry(lambda: client.create_model_version(name, source, run_id=run_id, tags=version_tags,
                                                            description=description, await_creation_for=0),
                        uri=uri, what="register", timeout=timeout)
            version = int(mv.version)
        if alias:
            promote(name, version, alias, uri=uri, lock_timeout=timeout)
        log.info("registered %s version %d (%s, %s parameters) from %s", name, version, family,
                 lin.human_count(int(version_tags[TAG_PARAMS])), ckpt)
        return version
    except BaseException as e:
        _undo(client, uri, name, run_id, artifact_dir, version, created_model, timeout)
        if isinstance(e, RegistryError | KeyboardInterrupt | SystemExit | ValueError):
            raise
        raise RegistryError(f"registering {ckpt} as {name!r} in {uri} failed ({type(e).__name__}: {e}); "
                            "nothing was registered") from e


def _undo(client, uri: str, name: str, run_id: str | None, artifact_dir: Path | None, version: int | None,
          created_model: bool, timeout: float) -> None:
    """Remove what a failed registration made: its version, its run and artifacts, an empty model."""
    db = sqlite_path(uri)
    budget = min(timeout, 30.0)
    steps: list[tuple[str, Callable[[], Any]]] = []
    if version is not None:
        steps.append(("model version", lambda: client.delete_model_version(name, str(version))))
    if run_id is not None:
        steps.append(("run", lambda: client.delete_run(run_id)))
    for what, step in steps:
        try:
            _retry(step, uri=uri, what="clean up", timeout=budget)
        except Exception as e:  # noqa: BLE001 - report and go on cleaning
            log.warning("could not remove the %s of a failed registration of %s: %s", what, name, e)
    if artifact_dir is not None and artifact_dir.exists():
        shutil.rmtree(artifact_dir, ignore_errors=True)
    if created_model:
        try:
            with _file_lock(db, uri, budget):  # no tsfm writer can add a version in between
                info = _retry(lambda: _model(client, name), uri=uri, what="clean up", timeout=budget)
                if info is not None and not info.versions:
                    _retry(lambda: client.delete_registered_model(name), uri=uri, what="clean up", timeout=budget)
        except Exception as e:  # noqa: BLE001
            log.warning("could not remove the empty registered model %s after a failed registration: %s", name, e)


# -- aliases -----------------------------------------------------------------------------------
def promote(name: str, version: int | str, alias: str = "production", *, uri: str | None = None,
            lock_timeout: float | None = None) -> int | None:
    """Point ``alias`` (``staging``, ``production``, any name) at ``version`` of ``name``; returns the
    version it pointed at before (None if it is new)."""
    uri = normalize_uri(uri)
    timeout = lock_timeout_s(lock_timeout)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", alias or "") or alias.lower() == "latest" or re.fullmatch(r"v\d+", alias):
        raise ValueError(f"alias {alias!r}: use letters, digits, '_' and '-' (not 'latest' nor v<number>, which "
                         "MLflow reserves)")
    client = _client(uri, write=False, lock_timeout=timeout)
    info, target = _retry(lambda: _lookup(client, uri, ModelRef(name, version=int(version))), uri=uri,
                          what="promote", timeout=timeout)
    before = info.aliases.get(alias)
    _retry(lambda: client.set_registered_model_alias(name, alias, str(target.version)), uri=uri, what="promote",
           timeout=timeout)
    return before


def remove_alias(name: str, alias: str, *, uri: str | None = None, lock_timeout: float | None = None) -> None:
    uri = normalize_uri(uri)
    timeout = lock_timeout_s(lock_timeout)
    client = _client(uri, write=False, lock_timeout=timeout)
    _retry(lambda: _lookup(client, uri, ModelRef(name, alias=alias)), uri=uri, what="remove alias", timeout=timeout)
    _retry(lambda: client.delete_registered_model_alias(name, alias), uri=uri, what="remove alias", timeout=timeout)


# -- read --------------------------------------------------------------------------------------
def list_models(*, uri: str | None = None, lock_timeout: float | None = None) -> list[ModelInfo]:
    """Every registered model with its versions and aliases."""
    uri = normalize_uri(uri)
    timeout = lock_timeout_s(lock_timeout)
    client = _client(uri, write=False, lock_timeout=timeout)

    return _retry(lambda: [_model_info(client, rm) for rm in _registered_models(client)], uri=uri, what="list",
                  timeout=timeout)


def get_model(name: str, *, uri: str | None = None, lock_timeout: float | None = None) -> ModelInfo:
    uri = normalize_uri(uri)
    timeout = lock_timeout_s(lock_timeout)
    client = _client(uri, write=False, lock_timeout=timeout)
    info = _retry(lambda: _model(client, name), uri=uri, what="show", timeout=timeout)
    if info is None:
        raise _not_found_name(client, uri, name)
    return info


def get_version(ref: str | ModelRef, *, uri: str | None = None, lock_timeout: float | None = None) -> VersionInfo:
    """The version that ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``NAME`` (latest) names."""
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    uri = normalize_uri(uri)
    timeout = lock_timeout_s(lock_timeout)
    client = _client(uri, write=False, lock_timeout=timeout)
    return _retry(lambda: _lookup(client, uri, ref)[1], uri=uri, what="show", timeout=timeout)


def version_metrics(name: str, *, alias: str | None = None, version: int | None = None, uri: str | None = None,
                    lock_timeout: float | None = None) -> dict[str, float] | None:
    """The recorded metrics of ``name@alias`` (or ``name/version``, or the latest version); None when
    there is no such model, alias or version yet (e.g. no incumbent to compare a candidate with)."""
    ref = ModelRef(name, alias=alias) if alias else ModelRef(name, version=version) if version else ModelRef(name)
    try:
        return get_version(ref, uri=uri, lock_timeout=lock_timeout).metrics
    except RegistryNotFound:
        return None


def resolve_uri(uri: str | None = None) -> str:
    """The registry URI that ``uri`` (None: the default) means, SQLite paths made absolute."""
    return normalize_uri(uri)


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE, Path.home() / ".cache" / "tsfm" / "registry")).expanduser()


def resolve(ref: str | ModelRef, *, uri: str | None = None, lock_timeout: float | None = None) -> Path:
    """The local checkpoint directory of a registered version (``models:/NAME@ALIAS`` or
    ``models:/NAME/VERSION``), ready for ``load_forecaster``.

    With a local artifact store (the default) that is the artifact directory itself; a remote store's
    artifacts are downloaded once into ``$TSFM_REGISTRY_CACHE`` (``~/.cache/tsfm/registry``).
    """
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    uri = normalize_uri(uri)
    timeout = lock_timeout_s(lock_timeout)
    client = _client(uri, write=False, lock_timeout=timeout)
    v = _retry(lambda: _lookup(client, uri, ref)[1], uri=uri, what="load", timeout=timeout)
    source = _retry(lambda: client.get_model_version_download_uri(v.name, str(v.version)), uri=uri, what="load",
                    timeout=timeout)
    local = _local_artifact_path(source)
    if local is None:
        local = _download(source, uri, v)
    if not (local / lin.CONFIG).is_file() or not (local / lin.WEIGHTS).is_file():
        raise RegistryError(f"{ref} (version {v.version} of {v.name!r}): its checkpoint files are missing from the "
                            f"artifact store at {local}; the artifacts were moved or deleted. Register the model again.")
    expected = v.tags.get(TAG_BYTES)
    if expected and expected.isdigit() and (local / lin.WEIGHTS).stat().st_size != int(expected):
        raise RegistryError(f"{ref}: {local / lin.WEIGHTS} has {(local / lin.WEIGHTS).stat().st_size} bytes, "
                            f"{expected} were registered; the artifact is damaged. Register the model again.")
    return local


def _download(source: str, uri: str, v: VersionInfo) -> Path:
    from mlflow.artifacts import download_artifacts

    key = re.sub(r"[^A-Za-z0-9._-]+", "_", uri)[-80:]
    target = cache_dir() / key / v.name / str(v.version)
    if (target / lin.CONFIG).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{v.version}.{uuid.uuid4().hex}"
    try:
        got = Path(download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=uri))
        try:
            got.rename(target)
        except OSError:  # another process downloaded it first
            if not (target / lin.CONFIG).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
