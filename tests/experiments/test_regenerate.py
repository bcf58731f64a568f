"""experiments/scaling/regenerate.sh: every job it would launch composes and passes the train checks, every fit
reads sweeps it runs, and the record resumes it (a finished sweep is copied to the record and never rerun, a failed
one is not recorded, fits read the record and name what it lacks)."""

from __future__ import annotations

import itertools
import os
import re
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
    out = _bash(
        "--dry-run", str(work), env={"RECORD": ""}
    )  # the default record, whatever the caller's shell says
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
            assert Path(d).name not in swept, f"two sweeps record as {Path(d).name}"
            swept.add(Path(d).name)
            continue
        ns = _parser().parse_args(args)  # argparse exits (SystemExit) on a bad option
        for d in getattr(ns, "multirun_dirs", []):  # the record, named relative to the repository
            assert d.parent == Path("experiments/scaling/sweeps"), d
            assert d.name in swept, f"`scaling {' '.join(args)}` reads {d}, which no earlier step sweeps"
        if ns.command in ("fit", "tune"):  # every fit and grid table writes its own directory of results
            assert ns.out is not None and ns.out.is_relative_to("experiments/scaling/results"), ns.out
            assert ns.out not in outs, f"two fits write {ns.out}"
            outs.add(ns.out)
        fits += 1
    assert (len(swept), fits, len(outs)) == (30, 18, 12)


def _fake_python(tmp_path: Path, fail_on: str = "", jobs: int = 2) -> Path:
    """Records each ``$PY -m ...`` call; exits 1 on a call containing ``fail_on``; a ``tsfm.train`` call writes
    ``jobs`` Hydra job directories under its sweep dir: what the fits read, and a checkpoint they do not."""
    fake = tmp_path / "fakepy"
    fake.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {tmp_path}/calls
[[ -n '{fail_on}' && "$*" == *'{fail_on}'* ]] && exit 1
d=""
for a in "$@"; do [[ $a == hydra.sweep.dir=* ]] && d=${{a#hydra.sweep.dir=}}; done
[[ -z $d ]] && exit 0
for ((j = 0; j < {jobs}; j++)); do
  mkdir -p $d/$j/.hydra $d/$j/csv/version_0 $d/$j/final_eval $d/$j/checkpoints
  echo "model: {{family: baseline}}" > $d/$j/.hydra/config.yaml
  echo "- model=x$j" > $d/$j/.hydra/overrides.yaml
  printf 'step,val/loss\n149,1.5\n' > $d/$j/csv/version_0/metrics.csv
  echo '{{}}' > $d/$j/final_eval/results.json
  echo weights > $d/$j/checkpoints/last.ckpt
done
mkdir -p $d && touch $d/multirun.yaml
""")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def _calls(tmp_path: Path) -> list[str]:
    f = tmp_path / "calls"
    return f.read_text().splitlines() if f.exists() else []


def _env(tmp_path: Path, **kw) -> dict[str, str]:
    return {"PY": str(_fake_python(tmp_path, **kw)), "RECORD": str(tmp_path / "rec")}


def test_a_finished_sweep_is_recorded_a_failed_one_is_not_and_a_new_work_dir_skips_the_record(tmp_path):
    work, rec = tmp_path / "w", tmp_path / "rec"
    out = _bash(str(work), "enc_dec_600", "enc_dec_300", env=_env(tmp_path, fail_on="s300"))
    assert out.returncode != 0  # the 300-step sweep failed: the run stops there
    assert [c.split()[-1] for c in _calls(tmp_path)] == [
        f"hydra.sweep.dir={work}/s600",
        f"hydra.sweep.dir={work}/s300",
    ]
    # what the fits read, and only that, with DONE; nothing of the failed sweep
    files = sorted(str(p.relative_to(rec / "s600")) for p in (rec / "s600").rglob("*") if p.is_file())
    assert files == ["0/.hydra/config.yaml", "0/.hydra/overrides.yaml", "0/csv/version_0/metrics.csv",
                     "0/final_eval/results.json", "1/.hydra/config.yaml", "1/.hydra/overrides.yaml",
                     "1/csv/version_0/metrics.csv", "1/final_eval/results.json", "DONE"]  # fmt: skip
    assert (
        rec / "s600" / "0" / "csv" / "version_0" / "metrics.csv"
    ).read_text() == "step,val/loss\n149,1.5\n"
    done = (rec / "s600" / "DONE").read_text()
    assert re.match(r"\d+ s, 2 jobs, \d{4}-\d\d-\d\d, commit \S+", done), done
    assert sorted(p.name for p in rec.iterdir()) == ["s600"]

    # fixed, in another WORK (a fresh clone, another machine): the recorded sweep is skipped, the failed one redone
    out = _bash(str(tmp_path / "w2"), "enc_dec_600", "enc_dec_300", env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert re.search(r"sweep s600: recorded \(\d+ s, 2 jobs", out.stdout)
    assert _calls(tmp_path)[2:] == [f"-m tsfm.train experiment=scaling_enc_vs_dec trainer.max_steps=300 "
                                    f"trainer.val_check_interval=75 hydra.sweep.dir={tmp_path}/w2/s300"]  # fmt: skip
    assert (rec / "s300" / "DONE").exists() and not (tmp_path / "w2" / "s600").exists()


def test_a_sweep_without_jobs_is_not_recorded(tmp_path):
    out = _bash(str(tmp_path / "w"), "enc_dec_600", env=_env(tmp_path, jobs=0))
    assert out.returncode != 0 and "holds no Hydra job" in out.stderr
    assert list((tmp_path / "rec").iterdir()) == []


def test_a_step_of_several_sweeps_resumes_at_the_sweep_that_failed_and_fits_read_the_record(tmp_path):
    work, rec = tmp_path / "w", tmp_path / "rec"
    out = _bash(str(work), "moirai_long", env=_env(tmp_path, fail_on="moirai_2500"))
    assert out.returncode != 0
    assert sorted(p.name for p in rec.iterdir()) == ["moirai_5000"]
    out = _bash(str(work), "moirai_long", "fits", env=_env(tmp_path))
    assert out.returncode != 0  # the fits ran, but most of their sweeps are not recorded
    assert "sweep moirai_5000: recorded" in out.stdout
    calls = _calls(tmp_path)[2:]
    assert [c.split("hydra.sweep.dir=")[1].split()[0] for c in calls[:2]] == [
        f"{work}/moirai_2500",
        f"{work}/moirai_1250",
    ]
    fits = calls[2:]
    # the Moirai fits (the long sweeps, with and without the D/N filter) and the ladder table ran, on the record
    assert [c.split()[2] for c in fits] == ["fit", "fit", "ladder"]
    assert all(f"{rec}/moirai_5000" in c for c in fits[:2])
    assert "regenerate.sh: 15 fit(s) skipped, their sweeps not in" in out.stderr
    assert "--out experiments/scaling/results/id_ood_pure (needs s600 r600)" in out.stderr
    assert (
        "--out experiments/scaling/results/families_joint_300_600_1200 (needs chronos2300 chronos2600"
        in out.stderr
    )

    n = len(_calls(tmp_path))  # again: nothing trains, the same fits run
    out = _bash(str(work), "moirai_long", "fits", env=_env(tmp_path))
    assert [c.split()[2] for c in _calls(tmp_path)[n:]] == ["fit", "fit", "ladder"]


def test_relative_work_and_record_are_the_callers_and_a_step_name_first_is_a_step(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "rel", "enc_dec_600"], capture_output=True, text=True,
                         cwd=tmp_path)  # fmt: skip
    assert f"hydra.sweep.dir={tmp_path}/rel/s600" in out.stdout
    out = _bash("--dryrun")
    assert out.returncode == 2 and "'--dryrun' is not a work directory" in out.stderr
    # `regenerate.sh fits` (no WORK) refits from the record; a relative RECORD is the caller's
    for name in ("lr", "lr_high", "lr_mup4"):
        (tmp_path / "rec" / name).mkdir(parents=True)
        if name != "lr_mup4":  # lr_mup4 holds no DONE: not recorded
            (tmp_path / "rec" / name / "DONE").write_text("1 s\n")
    fake = _fake_python(tmp_path)
    out = subprocess.run(["bash", str(SCRIPT), "fits"], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PY": str(fake), "RECORD": "rec"})  # fmt: skip
    assert out.returncode != 0 and "16 fit(s) skipped" in out.stderr
    assert "--out experiments/scaling/results/mup_output_mult4 (needs lr_mup4)" in out.stderr
    assert _calls(tmp_path) == [
        f"-m tsfm.scaling lr-transfer {tmp_path}/rec/lr {tmp_path}/rec/lr_high --out experiments/scaling/results",
        "-m tsfm.scaling ladder",
    ]


def test_a_rerun_starts_from_an_empty_sweep_dir_so_no_stale_job_is_recorded(tmp_path):
    work = tmp_path / "w"
    (work / "r600" / "3" / ".hydra").mkdir(parents=True)  # a job of an earlier, interrupted try in the same WORK
    (work / "r600" / "3" / ".hydra" / "config.yaml").write_text("model: {}\n")
    assert _bash(str(work), "enc_random_600", env=_env(tmp_path)).returncode == 0
    assert [c.split()[-1] for c in _calls(tmp_path)] == [f"hydra.sweep.dir={work}/r600"]
    assert not (work / "r600" / "3").exists()
    assert sorted(p.name for p in (tmp_path / "rec" / "r600").iterdir()) == ["0", "1", "DONE"]
    assert "2 jobs" in (tmp_path / "rec" / "r600" / "DONE").read_text()


def test_a_record_without_done_is_trained_again(tmp_path):
    (tmp_path / "rec" / "r600" / "0").mkdir(parents=True)  # e.g. a copy interrupted before its rename
    out = _bash(str(tmp_path / "w"), "enc_random_600", env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert len(_calls(tmp_path)) == 1 and (tmp_path / "rec" / "r600" / "DONE").exists()


def test_a_failed_copy_records_nothing(tmp_path):
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "cp").write_text("#!/usr/bin/env bash\nexit 1\n")
    (shim / "cp").chmod(0o755)
    env = {**_env(tmp_path), "PATH": f"{shim}:{os.environ['PATH']}"}
    out = _bash(str(tmp_path / "w"), "enc_random_600", env=env)
    assert out.returncode != 0
    assert [p.name for p in (tmp_path / "rec").iterdir() if not p.name.endswith(".partial")] == []


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
