"""Download the public benchmark data an eval suite names (needs internet; the dev suite does not).

    python -m tsfm.eval.download --suite chronos_bench_ii --data-dir data
    python -m tsfm.eval.download --suite gift_eval --data-dir data

Every ``hf`` dataset of the suite is fetched with ``datasets.load_dataset(<hf_repo>, <name>)``
and saved with ``save_to_disk`` at ``<data-dir>/<path>`` (the place the suite looks); ``arrow``
suites with an ``hf_repo`` (GIFT-Eval) are fetched whole with
``huggingface_hub.snapshot_download``. Packaged datasets need nothing. This is deliberately
thin: the offline path (the dev suite) is the tested one.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

CONF = Path(__file__).resolve().parents[2] / "conf" / "eval"


def _suite(name_or_path: str) -> dict:
    p = Path(name_or_path)
    if not p.exists():
        p = CONF / f"{name_or_path}.yaml"
    if not p.exists():
        known = sorted(f.stem for f in CONF.glob("*.yaml"))
        raise SystemExit(f"no suite {name_or_path!r}; choose one of {known} or pass a YAML path")
    return yaml.safe_load(p.read_text())


def plan(suite: dict, data_dir: Path) -> list[tuple[str, str, str | None, Path]]:
    """(kind, repo, config name, target dir) for every download the suite needs; already present ones are left out."""
    todo, seen = [], set()
    for d in suite.get("datasets", []):
        if d.get("source") == "packaged":
            continue
        repo = d.get("hf_repo") or suite.get("hf_repo")
        if repo is None:
            log.warning("%s: no hf_repo given; put the data at %s yourself", d["name"], data_dir / d.get("path", d["name"]))
            continue
        if d["source"] == "hf":
            target = data_dir / d.get("path", d["name"])
            item = ("hf", repo, Path(d.get("path", d["name"])).name, target)
        else:  # a whole repository of save_to_disk directories (GIFT-Eval)
            target = data_dir / Path(d.get("path", d["name"])).parts[0]
            item = ("snapshot", repo, None, target)
        if item not in seen and not (item[0] == "hf" and target.exists()):
            seen.add(item)
            todo.append(item)
    return todo


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m tsfm.eval.download",
        description="Download the Hugging Face datasets an eval suite (conf/eval/<suite>.yaml) reads, "
        "to where the suite looks for them. Needs internet.",
    )
    ap.add_argument("--suite", required=True, help="suite name (e.g. chronos_bench_ii, gift_eval) or a YAML path")
    ap.add_argument("--data-dir", default="data", help="the suite's data_dir (default: ./data)")
    ap.add_argument("--dry-run", action="store_true", help="print what would be downloaded")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data_dir = Path(args.data_dir).expanduser()
    todo = plan(_suite(args.suite), data_dir)
    if not todo:
        log.info("nothing to download for %s under %s", args.suite, data_dir)
    for kind, repo, name, target in todo:
        log.info("%s %s%s -> %s", "would fetch" if args.dry_run else "fetching", repo, f" [{name}]" if name else "", target)
        if args.dry_run:
            continue
        if kind == "hf":
            import datasets

            ds = datasets.load_dataset(repo, name, split="train")
            ds.save_to_disk(str(target))
        else:
            from huggingface_hub import snapshot_download

            snapshot_download(repo_id=repo, repo_type="dataset", local_dir=str(target))


if __name__ == "__main__":
    main()
