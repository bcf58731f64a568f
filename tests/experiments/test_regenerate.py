"""experiments/scaling/regenerate.sh: every job it would launch composes and passes the train checks, every fit
reads sweeps it runs, and its steps resume (a finished step is skipped, a failed one is not marked)."""

from __future__ import annotations

import itertools
import os
import shlex
import stat
import subprocess
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.compose import compose_config
from tsfm.scaling.__main__ import _parser
from tsfm.training.build import check_config
from tsfm.utils.config import register_resolvers

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "scaling" / "regenerate.sh"


def _bash(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def _commands(work: Path) -> list[tuple[str, list[str]]]:
    out = _bash("--dry-run", str(work))
    assert out.returncode == 0, out.stderr
    cmds = []
    for line in out.stdout.splitlines():
        if line and not line.startswith("#"):
            tool, *args = shlex.split(line)
            cmds.append((tool, args))
    return cmds


def _sweep(args: list[str]) -> dict[str, list[str]]:
    """Per swept key, the ``key=value`` overrides of one ``tsfm.train`` command, as Hydra's basic sweeper reads
    them (the experiment's ``hydra.sweeper.params``, then the command line; a later key replaces an earlier one)."""
    args = [a for a in args if a not in ("-m", "--multirun")]
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(args) if not o.is_sweep_override()]
    params = _compose(fixed).hydra.sweeper.params or {}
    keys: dict[str, list[str]] = {}
    for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + args):
        key = o.get_key_element()
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        keys[key] = [f"{key}={v}" for v in values]
    return keys


def _compose(overrides: list[str]):  # with the hydra node: sweeps, launchers, ${hydra:...}
    return compose_config(overrides, hydra_config=True)


def test_every_job_composes_resolves_and_passes_the_train_checks(tmp_path):
    """Every value of every swept key is composed at least once (the i-th job takes each key's i-th value, cycling),
    so a misspelt key, an unknown config or size, or a value the train checks refuse fails here, not hours in."""
    register_resolvers()
    trains = [args for tool, args in _commands(tmp_path / "w") if tool == "train"]
    assert len(trains) >= 25
    n_jobs, seen = 0, set()
    for args in trains:
        keys = _sweep(args)
        jobs = list(itertools.product(*keys.values()))
        assert len(jobs) >= 2, f"one job only (not a sweep?): {args}"
        for job in jobs:
            key = tuple(sorted(o for o in job if not o.startswith("hydra.sweep.dir=")))
            assert key not in seen, f"the same job twice: {job}"
            seen.add(key)
        n_jobs += len(jobs)
        for i in range(max(len(v) for v in keys.values())):
            cfg = _compose([v[i % len(v)] for v in keys.values()])
            HydraConfig.instance().set_config(cfg)
            resolved = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in cfg if k != "hydra"
                        and OmegaConf.is_config(cfg[k])}  # fmt: skip
            assert resolved["trainer"]["max_steps"] > 0
            assert cfg.hydra.sweep.dir.startswith(str(tmp_path / "w"))
            check_config(cfg)
    assert n_jobs == 378  # the count experiments/scaling/README.md gives


def test_every_fit_reads_sweeps_the_script_runs_and_parses(tmp_path):
    cmds = _commands(tmp_path / "w")
    swept: set[str] = set()
    outs: set[Path] = set()
    fits = 0
    for tool, args in cmds:
        if tool == "train":
            (d,) = [a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")]
            assert d not in swept, f"two sweeps write {d}"
            swept.add(d)
            continue
        ns = _parser().parse_args(args)  # argparse exits (SystemExit) on a bad option
        for d in getattr(ns, "multirun_dirs", []):
            assert str(d) in swept, f"`scaling {' '.join(args)}` reads {d}, which no earlier step sweeps"
        if ns.command == "fit":  # every fit writes its own directory of results
            assert ns.out is not None and ns.out.is_relative_to("experiments/scaling/results"), ns.out
            assert ns.out not in outs, f"two fits write {ns.out}"
            outs.add(ns.out)
        fits += 1
    assert (len(swept), fits, len(outs)) == (30, 16, 10)


def _fake_python(tmp_path: Path, fail_on: str = "") -> Path:
    """Records each ``$PY -m ...`` call; exits 1 on a call containing ``fail_on``."""
    fake = tmp_path / "fakepy"
    fake.write_text(f"#!/usr/bin/env bash\necho \"$*\" >> {tmp_path}/calls\n"
                    f"[[ -n '{fail_on}' && \"$*\" == *'{fail_on}'* ]] && exit 1\nexit 0\n")  # fmt: skip
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def _calls(tmp_path: Path) -> list[str]:
    f = tmp_path / "calls"
    return f.read_text().splitlines() if f.exists() else []


def test_steps_resume_a_finished_step_is_skipped_a_failed_one_is_not_marked(tmp_path):
    work = tmp_path / "w"
    fake = _fake_python(tmp_path, fail_on="s300")
    out = _bash(str(work), "enc_dec_600", "enc_dec_300", env={"PY": str(fake)})
    assert out.returncode != 0  # the 300-step sweep failed: the run stops there
    assert [c.split()[-1] for c in _calls(tmp_path)] == [
        f"hydra.sweep.dir={work}/s600",
        f"hydra.sweep.dir={work}/s300",
    ]
    assert (work / ".done" / "enc_dec_600").read_text().endswith(" s\n")
    assert not (work / ".done" / "enc_dec_300").exists()

    fake = _fake_python(tmp_path)  # fixed: the rerun skips the finished step and redoes the failed one
    out = _bash(str(work), "enc_dec_600", "enc_dec_300", env={"PY": str(fake)})
    assert out.returncode == 0, out.stderr
    assert "enc_dec_600: done before" in out.stdout
    assert _calls(tmp_path)[2:] == [f"-m tsfm.train experiment=scaling_enc_vs_dec trainer.max_steps=300 "
                                    f"trainer.val_check_interval=75 hydra.sweep.dir={work}/s300"]  # fmt: skip
    assert (work / ".done" / "enc_dec_300").exists()


def test_a_step_of_several_sweeps_resumes_at_the_sweep_that_failed_and_fits_always_rerun(tmp_path):
    work = tmp_path / "w"
    out = _bash(str(work), "moirai_long", env={"PY": str(_fake_python(tmp_path, fail_on="moirai_2500"))})
    assert out.returncode != 0 and not (work / ".done" / "moirai_long").exists()
    assert sorted(p.name for p in (work / ".done").iterdir()) == ["sweep_moirai_5000"]
    out = _bash(str(work), "moirai_long", "fits", env={"PY": str(_fake_python(tmp_path))})
    assert out.returncode == 0, out.stderr
    assert "sweep " + str(work / "moirai_5000") + ": done before" in out.stdout
    calls = _calls(tmp_path)[2:]
    assert [c.split("hydra.sweep.dir=")[1].split()[0] for c in calls[:2]] == [
        f"{work}/moirai_2500",
        f"{work}/moirai_1250",
    ]
    assert all("tsfm.scaling" in c for c in calls[2:]) and len(calls) == 2 + 16
    assert (work / ".done" / "fits").exists()
    out = _bash(str(work), "moirai_long", "fits", env={"PY": str(_fake_python(tmp_path))})
    assert "moirai_long: done before" in out.stdout and len(_calls(tmp_path)) == 2 + 18 + 16  # the fits again


def test_a_relative_work_dir_is_the_callers_and_a_step_name_is_not_a_work_dir(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "rel", "enc_dec_600"], capture_output=True, text=True,
                         cwd=tmp_path)  # fmt: skip
    assert f"hydra.sweep.dir={tmp_path}/rel/s600" in out.stdout
    for bad in ("fits", "--dryrun"):
        out = _bash(bad)
        assert out.returncode == 2 and f"'{bad}' is not a work directory" in out.stderr


def test_unknown_step_names_the_steps_and_runs_nothing(tmp_path):
    out = _bash(str(tmp_path / "w"), "enc_dec_600", "moirai_longg", env={"PY": str(_fake_python(tmp_path))})
    assert out.returncode == 2
    assert "unknown step 'moirai_longg'" in out.stderr and "moirai_long" in out.stderr
    assert _calls(tmp_path) == [] and not (tmp_path / "w").exists()


def test_list_prints_every_step_in_order():
    out = _bash("--list")
    assert out.returncode == 0
    steps = out.stdout.split()
    assert steps == ["enc_dec_600", "enc_random_600", "enc_dec_1200", "enc_dec_300", "chronos2_short", "moirai_short",
                     "chronos2_long", "moirai_long", "lr_transfer", "mup_tune", "mup_base64", "ladder_depth", "fits"]  # fmt: skip
