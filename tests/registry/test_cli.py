"""``python -m tsfm.registry list | show | register | promote``: its ``main`` in this process (a subprocess costs ~3.5 s
of imports a call), and the command itself as a user runs it (a subprocess) for the exit status and the error path."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from tsfm.registry.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, uri: str | None = None, subprocess_run: bool = False) -> subprocess.CompletedProcess:
    argv = [*args, *(["--uri", uri] if uri else [])]
    if subprocess_run:
        cmd = [sys.executable, "-m", "tsfm.registry", *argv]
        return subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return subprocess.CompletedProcess(["tsfm.registry", *argv], code, out.getvalue(), err.getvalue())


def ok(*args: str, uri: str | None = None) -> str:
    out = cli(*args, uri=uri)
    assert out.returncode == 0, f"{args}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_register_promote_list_and_show(baseline_export, registry_uri):
    out = cli("register", str(baseline_export), "--name", "base", "--metric", "dev/rel_wql=0.912", uri=registry_uri,
              subprocess_run=True)  # the command as typed
    assert out.returncode == 0, out.stderr
    out = out.stdout
    assert "registered base version 1: models:/base/1" in out and registry_uri in out
    out = ok("register", str(baseline_export), "--name", "base", "--alias", "staging", uri=registry_uri)
    assert "registered base version 2" in out and "models:/base@staging" in out
    out = ok("promote", "base", "1", "--alias", "production", uri=registry_uri)
    assert "base: alias production -> version 1" in out
    out = ok("promote", "base", "1", "--alias", "staging", uri=registry_uri)
    assert "alias staging -> version 1 (was version 2)" in out

    listing = ok("list", uri=registry_uri)
    row = next(line for line in listing.splitlines() if " base " in line)
    for cell in ("2", "production -> 1, staging -> 1", "baseline", "28.5K"):
        assert cell in row, (cell, listing)

    versions = ok("show", "base", uri=registry_uri)
    assert "base: 2 version(s)" in versions
    assert "production, staging" in versions and "dev/rel_wql=0.912" in versions  # v1: both aliases
    assert str(baseline_export) in versions

    one = ok("show", "base@production")  # --uri omitted: $TSFM_REGISTRY_URI (set by the fixture)
    assert "base version 1" in one and "models:/base@production" in one
    assert "metric dev/rel_wql" in one and "0.912" in one and "lineage git_commit" in one and "28,480" in one
    assert "file://" in one and "/artifacts/model" in one
    assert "base version 2" in ok("show", "models:/base/2", uri=registry_uri)


def test_errors_exit_1_and_say_what_exists(baseline_export, registry_uri, tmp_path):
    ok("register", str(baseline_export), "--name", "base", "--alias", "staging", uri=registry_uri)
    out = cli("show", "base@production", uri=registry_uri, subprocess_run=True)  # the exit status a shell sees
    assert out.returncode == 1 and not out.stdout
    assert "error: registered model 'base' has no alias 'production'" in out.stderr
    assert "versions: 1; aliases: staging -> 1" in out.stderr and "Traceback" not in out.stderr
    out = cli("show", "nope", uri=registry_uri)
    assert out.returncode == 1 and "registered models: base" in out.stderr
    missing = tmp_path / "none" / "mlflow.db"
    out = cli("show", "base@staging", uri=str(missing))
    assert out.returncode == 1 and f"no model registry at {missing}" in out.stderr and "register a model first" in out.stderr
    out = cli("list", uri=str(missing))  # listing a registry that does not exist yet is not an error
    assert out.returncode == 0 and "no model registry at" in out.stdout and not missing.exists()
    out = cli("register", str(tmp_path), "--name", "x", uri=registry_uri)
    assert out.returncode == 1 and "not a checkpoint directory" in out.stderr

