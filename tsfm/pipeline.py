"""The whole train-to-serve flow in one command: ``python -m tsfm.pipeline [overrides]``.

Steps, each in its own directory ``<root>/<step>-<key>`` where ``key`` hashes the step's inputs (its
settings and the keys of the steps it reads from):

1. ``corpus``   build (or verify the cache of) the training corpus of the train config;
2. ``search``   the Optuna learning-rate search (``python -m tsfm.train hparams_search=optuna``);
3. ``train``    train with the best parameters (``python -m tsfm.train``), export the weights;
4. ``evaluate`` zero-shot on an eval suite against Seasonal Naive, AutoETS and AutoTheta;
5. ``register`` register the export in the model registry (MLflow) with its metrics and lineage, and
   promote it to ``@staging`` when it beats the current ``@production`` on the suite (or none exists);
6. ``serve``    serve it (``python -m tsfm.serve``): in the foreground, or a checked start-and-stop.

A step whose directory holds ``done.json`` is skipped, so rerunning the command after a failure
resumes at the failed step (an interrupted training run resumes from its ``last.ckpt``). Changing any
input of a step changes its key and those of the steps after it. ``experiment=pipeline_smoke`` runs
the flow at toy size in a few minutes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from tsfm.utils.config import register_resolvers, to_plain

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
STEPS = ("corpus", "search", "train", "evaluate", "register", "serve")
PIPELINE_TAG = "tsfm.pipeline.register_key"  # on a registered version: the register step that made it


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-able inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class Step:
    """One step's directory and its completion record (``done.json``, written atomically last)."""

    def __init__(self, root: Path, name: str, key: str) -> None:
        self.name, self.key, self.dir = name, key, root / f"{name}-{key}"

    @property
    def result(self) -> dict[str, Any] | None:
        f = self.dir / "done.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "done.json.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=str))
        os.replace(tmp, self.dir / "done.json")
        return result


def _run(cmd: list[str], log_file: Path) -> None:
    """Run a tsfm command line; its output goes to ``log_file``; failure names the command and the log.

    It runs in the pipeline's own working directory, so relative paths (``./data``, ``./logs``,
    ``$PROJECT_ROOT``) mean the same in every step."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log.info("$ %s  (log: %s)", " ".join(cmd), log_file)
    with open(log_file, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"step failed (exit {rc}): {' '.join(cmd)}\n--- last lines of {log_file} ---\n{tail}\n"
                           "fix the cause and rerun the same pipeline command: finished steps are skipped")


def _overrides(value: Any, key: str) -> list[str]:
    """A list of ``key=value`` overrides, given as a list or as one space-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        import shlex

        return shlex.split(value)
    items = [str(v) for v in value]
    bad = [v for v in items if "=" not in v]
    if bad:
        raise ValueError(f"{key}: {bad} are not overrides; give key=value strings, e.g. "
                         f"{key}=\"['model=moirai_small','trainer.max_steps=2000']\"")
    return items


def _train_cmd(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "tsfm.train", *overrides]


class Pipeline:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.root = Path(str(cfg.root)).expanduser().resolve()
        self.train_overrides = _overrides(cfg.train, "train")
        self.results: dict[str, dict[str, Any]] = {}

    def _step(self, name: str, key: str, fn) -> dict[str, Any]:
        step = Step(self.root, name, key)
        done = step.result
        if done is not None:
            log.info("[%s] done before, skipped (%s)", name, step.dir)
        else:
            t0 = time.perf_counter()
            log.info("[%s] running in %s", name, step.dir)
            step.dir.mkdir(parents=True, exist_ok=True)
            done = step.finish({**fn(step), "seconds": round(time.perf_counter() - t0, 1)})
        self.results[name] = {**done, "key": key, "dir": str(step.dir)}
        return done

    # -- 1. corpus -----------------------------------------------------------------------------------
    def corpus(self) -> dict[str, Any]:
        from hydra import compose
        from hydra.utils import instantiate

        train_cfg = compose(config_name="train", overrides=self.train_overrides)
        data = OmegaConf.to_container(train_cfg.data, resolve=True)
        task = OmegaConf.to_container(train_cfg.model.task, resolve=True)

        def build(step: Step) -> dict[str, Any]:
            dm = instantiate(train_cfg.data, task=instantiate(train_cfg.model.task, _convert_="all"), _convert_="all")
            dm.prepare_data()  # generates or verifies (checksums) every cached sub-dataset
            dm.setup()
            summary = dm.corpus_summary()
            (step.dir / "corpus.json").write_text(json.dumps(summary, indent=2, default=str))
            return {"sub_datasets": [s["name"] for s in summary["sub_datasets"]],
                    "fingerprint": content_key(summary)}

        return self._step("corpus", content_key(data, task), build)

    # -- 2. search -----------------------------------------------------------------------------------
    def search(self, corpus_key: str) -> dict[str, Any]:
        s = self.cfg.search
        settings = {"n_trials": int(s.n_trials), "overrides": _overrides(s.overrides, "search.overrides")}
        if not s.enabled:
            return {"best_params": {}}

        def run(step: Step) -> dict[str, Any]:
            sweep = step.dir / "sweep"
            _run(_train_cmd([*self.train_overrides, "hparams_search=optuna", f"n_trials={settings['n_trials']}",
                             *settings["overrides"], f"hydra.sweep.dir={sweep}", "final_eval=null",
                             f"hydra.sweeper.storage=sqlite:///{step.dir / 'optuna.db'}",
                             "hydra.sweeper.study_name=pipeline"]), step.dir / "search.log")
            res = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"), resolve=True)
            return {"best_params": res["best_params"], "best_value": res["best_value"]}

        return self._step("search", content_key(self.train_overrides, settings, corpus_key), run)

    # -- 3. train ------------------------------------------------------------------------------------
    def train(self, corpus_key: str, best_params: dict[str, Any]) -> dict[str, Any]:
        overrides = [*self.train_overrides, *(f"{k}={v}" for k, v in sorted(best_params.items()))]

        def run(step: Step) -> dict[str, Any]:
            run_dir = step.dir / "run"
            last = run_dir / "checkpoints" / "last.ckpt"
            resume = "ckpt_path=last" if last.is_file() else "ckpt_path=null"  # a failed earlier attempt resumes
            _run(_train_cmd([*overrides, f"hydra.run.dir={run_dir}", resume, "final_eval=null", "export=true"]),
                 step.dir / "train.log")
            export = run_dir / "export"
            if not (export / "config.json").is_file():
                raise RuntimeError(f"training finished without an export in {export}")
            return {"export": str(export), "run_dir": str(run_dir), "overrides": overrides}

        return self._step("train", content_key(overrides, corpus_key), run)

    # -- 4. evaluate ---------------------------------------------------------------------------------
    def evaluate(self, train_key: str, export: str) -> dict[str, Any]:
        suite = str(self.cfg.eval_suite)

        def run(step: Step) -> dict[str, Any]:
            from tsfm.training.final_eval import evaluate_export

            agg = evaluate_export(Path(export), suite, self.cfg.paths, step.dir)
            return {"suite": suite, "rel_wql": float(agg["rel_wql"]), "rel_mase": float(agg["rel_mase"]),
                    "results": str(step.dir / "results.json")}

        return self._step("evaluate", content_key(train_key, suite), run)

    # -- 5. register ---------------------------------------------------------------------------------
    def register(self, eval_key: str, export: str, run_dir: str, scores: dict[str, Any]) -> dict[str, Any]:
        r = self.cfg.registry
        name, promote_to, compare_with = str(r.name), str(r.promote_to), str(r.compare_with)

        key = content_key(eval_key, name, promote_to, compare_with, r.uri)

        def run(step: Step) -> dict[str, Any]:
            from tsfm import registry
            from tsfm.registry.lineage import suite_metrics

            suite = str(scores["suite"])
            metric = f"{suite}/rel_wql"
            metrics = suite_metrics(suite, scores)
            # a rerun after a failure past registration (promotion, a crash) reuses that version
            version = _registered_by(name, key, r.uri)
            if version is None:
                version = registry.register(export, name, metrics=metrics, run_dir=run_dir, uri=r.uri,
                                            tags={PIPELINE_TAG: key})
            else:
                log.info("[register] %s version %d was registered by this step before; reused", name, version)
            incumbent = self._incumbent_score(name, compare_with, suite, step)
            better = incumbent is None or scores["rel_wql"] < float(incumbent)
            if better:
                registry.promote(name, version, alias=promote_to, uri=r.uri)
            log.info("[register] %s version %s: %s %.4f vs @%s %s -> %s", name, version, metric, scores["rel_wql"],
                     compare_with, "none" if incumbent is None else f"{float(incumbent):.4f}",
                     f"promoted to @{promote_to}" if better else "not promoted")
            return {"name": name, "version": int(version), "promoted": promote_to if better else None,
                    "incumbent": incumbent, "uri": registry.resolve_uri(r.uri)}

        return self._step("register", key, run)

    def _incumbent_score(self, name: str, alias: str, suite: str, step: Step) -> float | None:
        """``name@alias``'s rel WQL on ``suite``: as recorded, or (a version registered without a score on
        that suite: by hand, or trained with another final_eval) evaluated now. None: no such version."""
        from tsfm import registry
        from tsfm.registry.errors import RegistryNotFound
        from tsfm.registry.lineage import suite_score

        uri = self.cfg.registry.uri
        try:
            current = registry.get_version(f"models:/{name}@{alias}", uri=uri)
        except RegistryNotFound:
            return None
        recorded = suite_score(current.metrics, current.lineage, suite)
        if recorded is not None and math.isfinite(recorded):
            return recorded
        from tsfm.training.final_eval import evaluate_export

        log.info("[register] @%s (version %d) has no %s score recorded: evaluating it", alias, current.version, suite)
        agg = evaluate_export(registry.resolve(f"models:/{name}/{current.version}", uri=uri), suite, self.cfg.paths,
                              step.dir / f"incumbent-v{current.version}")
        score = float(agg.get("rel_wql", float("nan")))
        if not math.isfinite(score):  # it failed the suite: no score to beat
            log.warning("[register] @%s (version %d) gets no finite %s score; the candidate is compared with none",
                        alias, current.version, suite)
            return None
        return score

    # -- 6. serve ------------------------------------------------------------------------------------
    def serve(self, name: str, version: int) -> dict[str, Any] | None:
        s = self.cfg.serve
        if not s.enabled:
            log.info("[serve] disabled; serve it with: python -m tsfm.serve model=models:/%s/%d", name, version)
            return None
        from tsfm import registry

        env = {**os.environ, "TSFM_REGISTRY_URI": registry.resolve_uri(self.cfg.registry.uri)}  # the one registered in
        _check_port_free(str(s.host), int(s.port))
        cmd = [sys.executable, "-m", "tsfm.serve", f"model=models:/{name}/{version}", f"port={int(s.port)}",
               f"host={s.host}"]
        log_file = self.root / "serve.log"
        log.info("[serve] $ %s  (log: %s)", " ".join(cmd), log_file)
        with open(log_file, "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        url = f"http://{s.host}:{int(s.port)}"
        try:
            health = _wait_healthy(url, proc, float(s.start_timeout_s), log_file)
            result = {"url": url, "health": health}
            if s.block:
                log.info("[serve] serving %s at %s (Ctrl-C stops it)", f"models:/{name}/{version}", url)
                rc = proc.wait()
                if rc != 0:
                    raise RuntimeError(f"the server exited with {rc}; see {log_file}")
            else:  # a checked start: one forecast, then stop
                body = json.dumps({"inputs": [{"target": [float(i % 12) for i in range(48)]}],
                                   "parameters": {"prediction_length": 12}}).encode()
                req = urllib.request.Request(f"{url}/v1/forecast", data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as resp:
                    result["forecast_status"] = resp.status
                    result["forecast"] = json.loads(resp.read())
            self.results["serve"] = result
            return result
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)

    def run(self) -> dict[str, dict[str, Any]]:
        corpus = self.corpus()
        ck = self.results["corpus"]["key"]
        best = self.search(corpus["fingerprint"] + ck)
        trained = self.train(ck, best.get("best_params", {}))
        scores = self.evaluate(self.results["train"]["key"], trained["export"])
        reg = self.register(self.results["evaluate"]["key"], trained["export"], trained["run_dir"], scores)
        self.serve(reg["name"], reg["version"])
        summary = self.root / "pipeline.json"
        summary.write_text(json.dumps(self.results, indent=2, default=str))
        log.info("pipeline done: %s", summary)
        return self.results


def _registered_by(name: str, key: str, uri: str | None) -> int | None:
    """The version of ``name`` that the register step with this ``key`` made earlier, if any."""
    from tsfm import registry

    try:
        versions = registry.get_model(name, uri=uri).versions
    except registry.RegistryNotFound:
        return None
    return next((v.version for v in versions if v.tags.get(PIPELINE_TAG) == key), None)


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port that something already listens on: its /health would pass for our server's."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex((host, port)) == 0:
            raise RuntimeError(f"{host}:{port} is already in use (an earlier server?); stop it or choose another "
                               "port with serve.port=...")


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log_file: Path) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering /health; see {log_file}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                return json.loads(resp.read())
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the server did not answer {url}/health within {timeout:.0f} s; see {log_file}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pipeline")
def main(cfg: DictConfig) -> None:
    log.info("pipeline config:\n%s", OmegaConf.to_yaml(cfg))
    results = Pipeline(cfg).run()
    print(json.dumps({k: {kk: v for kk, v in r.items() if kk != "forecast"} for k, r in results.items()},
                     indent=2, default=str))


register_resolvers()
__all__ = ["Pipeline", "Step", "content_key", "main", "to_plain"]

if __name__ == "__main__":
    main()
