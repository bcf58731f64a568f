"""Where a built sub-dataset came from, and whether its files are still what was built.

Every sub-dataset tsfm builds (packaged real data, TSMixup, KernelSynth and the other
generators) carries a manifest, ``tsfm_manifest.json``, beside its Arrow files:

* ``spec``: the build settings (the corpus entry);
* ``files``: size and sha256 of every file of the directory, so a corrupted cache is noticed
  (:func:`verify`) and rebuilt instead of trained on;
* ``synthetic`` and ``sources``: the fingerprints (:func:`series_fingerprint`) of the *real*
  series the data was made from, grouped by source dataset (packaged data: its own series;
  TSMixup: the series it mixed; a purely synthetic generator: none).

The sources are what keeps training data and evaluation data apart (docs/architecture.md, "Training data vs evaluation data"): a model's
corpus summary (:func:`corpus_summary`, saved in checkpoints and as ``training_data.json`` in
exported checkpoint directories) lists them, and ``tsfm.evaluate`` marks every evaluated
dataset whose series appear there. Directories a user points at without a manifest are
recorded as of unknown provenance; nothing is hashed for them.

Cache builds are atomic (:func:`atomic_build`): data and manifest are written into a hidden
sibling directory that is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.data.types import Series

log = logging.getLogger(__name__)

MANIFEST = "tsfm_manifest.json"
TRAINING_DATA = "training_data.json"
FORMAT = 1
STALE_BUILD_AGE_S = 24 * 3600  # a build dir this old is abandoned whoever made it


# -- fingerprints ------------------------------------------------------------------------------
def series_fingerprint(values: Any) -> str:
    """Content hash of one series' target values as float32 (the identity training and evaluation
    data are compared by).

    Only the values count (not item id, start or frequency). ``[T]`` and ``[1, T]`` hash alike;
    every NaN hashes as one NaN and ``-0.0`` as ``0.0``, so a copy of the data matches however
    it was read.
    """
    a = np.asarray(values, dtype=np.float32)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    a = np.where(np.isnan(a), np.float32(np.nan), a) + np.float32(0.0)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(a.shape).encode())
    h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return h.hexdigest()


def observed(values: Any) -> bool:
    """Whether a series holds one observed value (all-missing series are never trained on)."""
    return bool(np.isfinite(np.asarray(values, dtype=np.float32)).any())


def fingerprints(series: Iterable[Series]) -> list[str]:
    """Sorted distinct fingerprints of the series that hold an observed value."""
    return sorted({series_fingerprint(s.target) for s in series if observed(s.target)})


# -- the manifest ------------------------------------------------------------------------------
def file_checksums(path: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size", "sha256"}}`` of every file under ``path`` except the manifest."""
    out = {}
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel == MANIFEST:
            continue
        with open(f, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        out[rel] = {"size": f.stat().st_size, "sha256": digest}
    return out


def _plain(spec: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(spec, sort_keys=True, default=str))


def write_manifest(
    path: str | Path,
    spec: dict[str, Any],
    sources: dict[str, Iterable[str]] | None = None,
    synthetic: bool = False,
) -> dict[str, Any]:
    """Write ``tsfm_manifest.json`` into the built directory ``path`` (checksums of its files now)."""
    path = Path(path)
    manifest = {
        "format": FORMAT,
        "spec": _plain(spec),
        "synthetic": bool(synthetic),
        "sources": {k: sorted(set(v)) for k, v in sorted((sources or {}).items())},
        "files": file_checksums(path),
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def manifest_writer(
    spec: dict[str, Any], sources: Callable[[], dict[str, Iterable[str]]] | None = None, synthetic: bool = False
) -> Callable[[Path], None]:
    """A ``finalize`` hook for :func:`tsfm.data.format.write_dataset`: the manifest is written into
    the finished directory before it is moved into place. ``sources`` is called then, so a
    generator can report what it drew while it was consumed."""

    def finalize(path: Path) -> None:
        write_manifest(path, spec, sources() if sources else {}, synthetic)

    return finalize


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of sub-dataset ``path``; ``None`` when there is none or it is not a valid one."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    try:
        m = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(m, dict)
        and isinstance(m.get("files"), dict)
        and isinstance(m.get("sources"), dict)
        and all(isinstance(v, list) for v in m["sources"].values())
        and isinstance(m.get("synthetic"), bool)
    )
    return m if ok else None


def verify(path: str | Path, spec: dict[str, Any] | None = None) -> str | None:
    """What is wrong with a built directory (``None``: intact). Checks the manifest is there and
    valid, was built from ``spec`` (when given), and every file has its recorded size and sha256."""
    path = Path(path)
    if not path.is_dir():
        return "does not exist"
    if not (path / MANIFEST).is_file():
        return f"has no {MANIFEST} (a half-written build, or one made by an older tsfm)"
    m = read_manifest(path)
    if m is None:
        return f"has an unreadable {MANIFEST}"
    if spec is not None and m.get("spec") != _plain(spec):
        return f"was built from other settings ({m.get('spec')} instead of {_plain(spec)})"
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {MANIFEST}
    if files != set(m["files"]):
        missing, extra = sorted(set(m["files"]) - files), sorted(files - set(m["files"]))
        return f"does not hold the files it was built with (missing {missing}, unexpected {extra})"
    for rel, rec in m["files"].items():
        f = path / rel
        if f.stat().st_size != rec.get("size"):
            return f"file {rel} has {f.stat().st_size} bytes instead of {rec.get('size')} (truncated or corrupted)"
        with open(f, "rb") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() != rec.get("sha256"):
                return f"file {rel} fails its sha256 checksum (corrupted)"
    return None


# -- atomic cache builds -----------------------------------------------------------------------
_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
_BUILD = ".build-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. no permission: it exists
        return True
    return True


def clean_stale_builds(target: str | Path, max_age_s: float = STALE_BUILD_AGE_S) -> list[Path]:
    """Remove build directories of ``target`` left by interrupted builds: those of a dead process
    on this host, and any older than ``max_age_s``. A live build (another process) is left alone."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    prefix = f".{target.name}{_BUILD}"
    removed = []
    for p in target.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        host, _, pid = p.name[len(prefix):].rpartition("-")[0].rpartition("-")
        try:
            dead = host == _HOST and not _alive(int(pid))
            old = time.time() - p.stat().st_mtime > max_age_s
        except (ValueError, OSError):
            continue
        if dead or old:
            log.warning("removing %s, left by an interrupted build of %s", p, target)
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextmanager
def atomic_build(target: str | Path) -> Iterator[Path]:
    """Yield a path to build ``target`` at; on success it replaces ``target`` in one rename.

    The path lies in a hidden sibling directory named after this host and process
    (:func:`clean_stale_builds` removes it if the process dies). An existing ``target`` (a
    corrupted cache) is moved aside and deleted only after the new one is in place.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}{_BUILD}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        out = work / target.name
        yield out
        if not out.is_dir():
            raise RuntimeError(f"the build of {target} wrote nothing at {out}")
        if target.exists():
            target.rename(work / "replaced")
        try:
            out.rename(target)
        except OSError:  # another process put its own build there meanwhile: keep that one
            if not target.is_dir():
                raise
            log.info("%s was built concurrently by another process; keeping that copy", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- what a model is trained on ----------------------------------------------------------------
def sub_dataset_summary(name: str, path: str | Path, weight: float) -> dict[str, Any]:
    """Provenance of one sub-dataset of a corpus, read from its manifest (unknown without one)."""
    m = read_manifest(path)
    entry: dict[str, Any] = {"name": name, "path": str(path), "weight": float(weight)}
    if m is None:
        return {**entry, "provenance": "unknown", "synthetic": None, "sources": {}}
    return {**entry, "provenance": "manifest", "synthetic": m["synthetic"], "sources": m["sources"],
            "spec": m.get("spec")}


def corpus_summary(entries: Iterable[Any], weighting: str | None = None) -> dict[str, Any]:
    """The training corpus as saved with a model: per sub-dataset (``entries`` have ``name``,
    ``path``, ``weight``) its weight, synthetic flag and source fingerprints by dataset."""
    subs = [sub_dataset_summary(e.name, e.path, e.weight) for e in entries]
    return {"format": FORMAT, "weighting": weighting, "sub_datasets": subs}


def write_training_data(summary: dict[str, Any], out_dir: str | Path) -> Path:
    """Write a corpus summary as ``training_data.json`` into an exported checkpoint directory."""
    path = Path(out_dir) / TRAINING_DATA
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
    return path
