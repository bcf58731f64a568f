"""Manifests of built sub-datasets: source fingerprints, checksums, corrupted caches rebuilt, atomic builds."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tsfm.data.manifest import MANIFEST, atomic_build, corpus_summary, series_fingerprint, verify
from tsfm.data.packaged import build_packaged, load_packaged
from tsfm.data.sources import materialize, resolve
from tsfm.data.synthetic.tsmixup import build_tsmixup, tsmixup_series

KS = {"name": "ks", "generator": "kernelsynth", "num_series": 6, "seed": 0, "length": 64}


def manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def build(cache: Path, *entries: dict) -> list:
    resolved = resolve(list(entries), cache)
    for e in resolved:
        materialize(e)
    return resolved


def test_fingerprint_depends_on_values_only() -> None:
    x = np.array([1.0, np.nan, 3.0, -0.0], np.float32)
    fp = series_fingerprint(x)
    assert len(fp) == 32 and fp == series_fingerprint(x[None, :]) == series_fingerprint(x.astype(np.float64))
    quiet_nan = np.frombuffer(np.array([0x7FC00001], np.uint32).tobytes(), np.float32)[0]  # another NaN payload
    assert series_fingerprint(np.array([1.0, quiet_nan, 3.0, 0.0], np.float32)) == fp
    assert series_fingerprint(np.array([1.0, np.nan, 3.0, 0.5], np.float32)) != fp
    assert series_fingerprint(np.ones((2, 3), np.float32)) != series_fingerprint(np.ones((3, 2), np.float32))


def test_generated_and_packaged_caches_record_spec_checksums_and_sources(tmp_path: Path) -> None:
    ks, m3 = build(tmp_path, KS, {"packaged": "m3_other"})
    m = manifest(ks.path)
    assert m["synthetic"] is True and m["sources"] == {}
    # the generator's version is part of the spec (and so of the cache key): older corpora are rebuilt
    assert m["spec"] == {"generator": "kernelsynth", "num_series": 6, "seed": 0, "length": 64, "version": 2}
    arrow = next(ks.path.glob("*.arrow"))
    assert m["files"][arrow.name] == {"size": arrow.stat().st_size,
                                      "sha256": hashlib.sha256(arrow.read_bytes()).hexdigest()}
    assert set(m["files"]) == {"data-00000-of-00001.arrow", "dataset_info.json", "state.json"}
    p = manifest(m3.path)
    expected = {series_fingerprint(s.target) for s in load_packaged("m3_other")}
    assert p["synthetic"] is False and list(p["sources"]) == ["m3_other"]
    assert set(p["sources"]["m3_other"]) == expected and len(expected) == 174
    # packaged data built on its own (CLI, build_packaged) has the same manifest sources
    build_packaged("m3_other", tmp_path / "own")
    assert manifest(tmp_path / "own")["sources"] == p["sources"] and verify(tmp_path / "own") is None


def test_tsmixup_records_the_real_series_it_mixed(tmp_path: Path) -> None:
    kw = {"num_series": 8, "seed": 3, "min_length": 16, "max_length": 48}
    build_tsmixup(["m3_other", "us_gasoline"], tmp_path / "mix", **kw)
    m = manifest(tmp_path / "mix")
    assert m["synthetic"] is False and m["spec"]["sources"] == ["m3_other", "us_gasoline"]
    # the same draws, replayed from the generator's own pure function
    pool, origin = [], []
    for name in ("m3_other", "us_gasoline"):
        for s in load_packaged(name):
            pool.append(s.target[0])
            origin.append(name)
    picked: list[int] = []
    for i in range(kw["num_series"]):
        tsmixup_series(i, pool, kw["seed"], 3, 1.5, kw["min_length"], kw["max_length"], picked)
    expected: dict[str, set] = {}
    for p in picked:
        expected.setdefault(origin[p], set()).add(series_fingerprint(pool[p]))
    assert {k: set(v) for k, v in m["sources"].items()} == expected
    assert 0 < sum(len(v) for v in expected.values()) <= 3 * kw["num_series"]


def test_corrupted_cache_is_rebuilt_identical_to_a_fresh_build(tmp_path: Path, caplog) -> None:
    (ks,) = build(tmp_path / "a", KS)
    (fresh,) = build(tmp_path / "b", KS)
    arrow = next(ks.path.glob("*.arrow"))
    good = arrow.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0x01
    arrow.write_bytes(bytes(data))
    assert "fails its sha256 checksum" in verify(ks.path, ks.build)
    with caplog.at_level(logging.WARNING):
        materialize(ks)
    assert str(ks.path) in caplog.text and "rebuilding" in caplog.text
    assert arrow.read_bytes() == good == next(fresh.path.glob("*.arrow")).read_bytes()
    assert manifest(ks.path) == manifest(fresh.path) and verify(ks.path, ks.build) is None
    assert sorted(p.name for p in ks.path.parent.iterdir()) == [ks.path.name]  # nothing left beside it


@pytest.mark.parametrize("damage", ["no-manifest", "truncated", "extra-file", "bad-json"])
def test_half_written_or_tampered_caches_are_rebuilt(tmp_path: Path, damage: str, caplog) -> None:
    (ks,) = build(tmp_path, KS)
    good = manifest(ks.path)
    arrow = next(ks.path.glob("*.arrow"))
    if damage == "no-manifest":
        (ks.path / MANIFEST).unlink()
    elif damage == "truncated":
        arrow.write_bytes(arrow.read_bytes()[:-100])
    elif damage == "extra-file":
        (ks.path / "data-00001-of-00002.arrow").write_bytes(b"x")
    else:
        (ks.path / MANIFEST).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        materialize(ks)
    assert f"corpus cache {ks.path}" in caplog.text
    assert manifest(ks.path) == good and verify(ks.path, ks.build) is None


def test_reuse_verifies_without_rewriting(tmp_path: Path, caplog) -> None:
    (ks,) = build(tmp_path, KS)
    mtimes = {p.name: p.stat().st_mtime_ns for p in ks.path.iterdir()}
    with caplog.at_level(logging.WARNING):
        materialize(ks)
    assert caplog.text == "" and {p.name: p.stat().st_mtime_ns for p in ks.path.iterdir()} == mtimes


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftover_build_dirs_are_ignored_and_cleaned(tmp_path: Path) -> None:
    from tsfm.data.manifest import _HOST

    (entry,) = resolve([KS], tmp_path)
    dead = tmp_path / f".{entry.path.name}.build-{_HOST}-{_dead_pid()}-0123abcd"
    live = tmp_path / f".{entry.path.name}.build-{_HOST}-{os.getpid()}-89abcdef"
    for d in (dead, live):  # an interrupted build: a half-written copy of the target
        (d / entry.path.name).mkdir(parents=True)
        (d / entry.path.name / "data-00000-of-00001.arrow").write_bytes(b"half")
    materialize(entry)
    assert not dead.exists() and live.exists()  # a live process's build is never touched
    assert verify(entry.path, entry.build) is None and len(resolve([KS], tmp_path)) == 1


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import tsfm.data.synthetic.kernelsynth as ks_mod

    real = ks_mod.generate_kernelsynth

    def broken(num_series: int, seed: int = 0, length: int = 1024, max_kernels: int = 5):
        yield from real(2, seed, length, max_kernels)  # some series, then the build dies
        raise RuntimeError("interrupted")

    (entry,) = resolve([KS], tmp_path)
    monkeypatch.setattr(ks_mod, "generate_kernelsynth", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        materialize(entry)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="wrote nothing"), atomic_build(tmp_path / "x"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_corpus_summary_marks_user_data_without_manifest_unknown(tmp_path: Path, uni_dir: Path) -> None:
    build_packaged("m3_other", tmp_path / "own")  # a user dir built by tsfm (with a manifest) keeps its provenance
    entries = build(tmp_path / "cache", KS, {"packaged": "m3_other", "weight": 2.0},
                    {"path": str(uni_dir)}, {"path": str(tmp_path / "own")})
    s = corpus_summary(entries, "observations")
    subs = {d["name"]: d for d in s["sub_datasets"]}
    assert s["weighting"] == "observations" and list(subs) == ["ks", "m3_other", "uni", "own"]
    assert subs["ks"]["synthetic"] is True and subs["ks"]["sources"] == {}
    assert subs["m3_other"]["weight"] == 2.0 and len(subs["m3_other"]["sources"]["m3_other"]) == 174
    assert subs["uni"] == {"name": "uni", "path": str(uni_dir), "weight": 1.0, "provenance": "unknown",
                           "synthetic": None, "sources": {}}
    assert subs["own"]["provenance"] == "manifest" and subs["own"]["sources"] == subs["m3_other"]["sources"]


def test_cli_builds_carry_manifests(tmp_path: Path) -> None:
    from tsfm.data.__main__ import main

    assert main(["synth", "kernelsynth", "--num-series", "3", "--length", "32", "--out", str(tmp_path / "ks")]) == 0
    assert main(["synth", "tsmixup", "--num-series", "3", "--sources", "m3_other", "--min-series-length", "16",
                 "--max-series-length", "32", "--out", str(tmp_path / "mix")]) == 0
    assert main(["build", "packaged", "m3_other", "--out", str(tmp_path / "pk")]) == 0
    assert manifest(tmp_path / "ks")["synthetic"] is True and manifest(tmp_path / "ks")["sources"] == {}
    assert list(manifest(tmp_path / "mix")["sources"]) == ["m3_other"]
    assert len(manifest(tmp_path / "pk")["sources"]["m3_other"]) == 174
    assert all(verify(tmp_path / d) is None for d in ("ks", "mix", "pk"))
