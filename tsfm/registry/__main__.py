"""``python -m tsfm.registry``: list, show, register and promote registered models.

    python -m tsfm.registry list
    python -m tsfm.registry register logs/train/runs/<time> --name chronos2-mini [--alias staging]
    python -m tsfm.registry promote chronos2-mini 3 --alias production
    python -m tsfm.registry show chronos2-mini            # every version
    python -m tsfm.registry show chronos2-mini@production # one version: metrics, lineage, artifact

``--uri`` chooses the registry (any MLflow URI, or a path to a ``.db`` file or its directory);
default ``$TSFM_REGISTRY_URI``, else ``logs/mlflow.db``. Exit status 1 with a message on errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence

from tsfm.registry import lineage as lin
from tsfm.registry import mlflow_registry as reg
from tsfm.registry.errors import RegistryError

KEY_METRICS = ("final_eval/rel_wql", "final_eval/rel_mase", "benchmark/avg_wql", "benchmark/avg_mase")


def _console():
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200, soft_wrap=True)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _params(v: reg.VersionInfo) -> str:
    return lin.human_count(v.params) if v.params is not None else "-"


def _metrics(v: reg.VersionInfo, keys: Sequence[str] = KEY_METRICS) -> str:
    """The headline metrics (final evaluation, lite benchmark), else the first three recorded."""
    m = v.metrics
    shown = [k for k in keys if k in m] or sorted(m)[:3]
    return " ".join(f"{k}={m[k]:.3g}" for k in shown) or "-"


def _metric_pairs(pairs: Sequence[str] | None) -> dict[str, float]:
    out = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"--metric {item!r}: use KEY=NUMBER, e.g. --metric dev/rel_wql=0.91") from None
    return out


def _tag_pairs(pairs: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--tag {item!r}: use KEY=VALUE")
        out[key] = value
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    uri = reg.normalize_uri(args.uri)
    db = reg.sqlite_path(uri)
    console = _console()
    if db is not None and not db.is_file():
        console.print(f"no model registry at {db} yet (nothing registered); {reg.REGISTER_HINT}")
        return 0
    models = reg.list_models(uri=uri)
    if not models:
        console.print(f"the registry {uri} is empty; {reg.REGISTER_HINT}")
        return 0
    table = Table("name", "versions", "latest", "aliases", "family", "params", "metrics (latest)", "registered",
                  title=f"registered models ({uri})")
    for m in models:
        latest = m.latest
        table.add_row(
            m.name, str(len(m.versions)), str(latest.version) if latest else "-",
            ", ".join(f"{a} -> {v}" for a, v in sorted(m.aliases.items())) or "-",
            latest.family if latest else "-", _params(latest) if latest else "-",
            _metrics(latest) if latest else "-", _when(latest.created) if latest else "-",
        )
    console.print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    ref = reg.ModelRef.parse(args.ref)
    console = _console()
    if ref.alias is None and ref.version is None and not ref.latest:
        info = reg.get_model(ref.name, uri=args.uri)
        table = Table("version", "aliases", "family", "params", "metrics", "registered", "registered from",
                      title=f"{info.name}: {len(info.versions)} version(s)")
        for v in info.versions:
            table.add_row(str(v.version), ", ".join(v.aliases) or "-", v.family, _params(v), _metrics(v),
                          _when(v.created), v.tags.get(reg.TAG_SOURCE, "-"))
        console.print(table)
        console.print(f"load one with: load_forecaster(\"models:/{info.name}/VERSION\") or "
                      f"\"models:/{info.name}@ALIAS\"")
        return 0
    v = reg.get_version(ref, uri=args.uri)
    table = Table("field", "value", title=f"{v.name} version {v.version}", show_header=False)
    table.add_row("uri", f"{v.uri}" + "".join(f"  models:/{v.name}@{a}" for a in v.aliases))
    table.add_row("aliases", ", ".join(v.aliases) or "-")
    table.add_row("family", v.family)
    table.add_row("params", f"{v.params:,}" if v.params is not None else "-")
    table.add_row("registered", _when(v.created))
    table.add_row("artifact", v.source)
    table.add_row("mlflow run", v.run_id or "-")
    if v.description:
        table.add_row("description", v.description)
    for k, value in sorted(v.metrics.items()):
        table.add_row(f"metric {k}", f"{value:.4g}")
    for k, value in sorted(v.lineage.items()):
        table.add_row(f"lineage {k}", value)
    for k, value in sorted(v.tags.items()):
        if not k.startswith(("metric.", "lineage.")) and k not in (reg.TAG_FAMILY, reg.TAG_PARAMS):
            table.add_row(k, value)
    console.print(table)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    version = reg.register(args.dir, args.name, metrics=_metric_pairs(args.metric), tags=_tag_pairs(args.tag),
                           alias=args.alias, description=args.description, uri=args.uri)
    uri = reg.normalize_uri(args.uri)
    msg = f"registered {args.name} version {version}: models:/{args.name}/{version}"
    if args.alias:
        msg += f" (alias {args.alias}: models:/{args.name}@{args.alias})"
    _console().print(f"{msg}\nregistry: {uri}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    before = reg.promote(args.name, args.version, args.alias, uri=args.uri)
    moved = f" (was version {before})" if before is not None and before != int(args.version) else ""
    _console().print(f"{args.name}: alias {args.alias} -> version {args.version}{moved}; "
                     f"load it with models:/{args.name}@{args.alias}")
    return 0


def parser() -> argparse.ArgumentParser:
    uri_help = ("registry: an MLflow URI (sqlite:///path/mlflow.db, http://host:5000) or a path to a .db file or "
                "its directory; default $TSFM_REGISTRY_URI, else logs/mlflow.db")
    common = argparse.ArgumentParser(add_help=False)  # --uri after the command too, without resetting one before it
    common.add_argument("--uri", default=argparse.SUPPRESS, help=uri_help)
    p = argparse.ArgumentParser(prog="python -m tsfm.registry",
                                description="The model registry (MLflow): versions and aliases of trained models. "
                                "Official checkpoints are in the catalogue: python -m tsfm.catalog.")
    p.add_argument("--uri", default=None, help=uri_help)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", parents=[common], help="every registered model, its versions and aliases")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("show", parents=[common], help="one model's versions, or one version (NAME@ALIAS, NAME/VERSION)")
    s.add_argument("ref", help="NAME, NAME@ALIAS, NAME/VERSION or NAME/latest (a models:/ prefix is accepted)")
    s.set_defaults(func=cmd_show)
    s = sub.add_parser("register", parents=[common], help="register a checkpoint directory (or a run dir's export/)")
    s.add_argument("dir", help="checkpoint directory (config.json + model.safetensors) or training run directory")
    s.add_argument("--name", required=True, help="registered model name (letters, digits, . _ + -)")
    s.add_argument("--alias", default=None, help="also point this alias (staging, production, ...) at the new version")
    s.add_argument("--metric", action="append", metavar="KEY=VALUE", help="a metric to record (repeatable)")
    s.add_argument("--tag", action="append", metavar="KEY=VALUE", help="a version tag to set (repeatable)")
    s.add_argument("--description", default=None)
    s.set_defaults(func=cmd_register)
    s = sub.add_parser("promote", parents=[common], help="point an alias at a version")
    s.add_argument("name")
    s.add_argument("version", type=int)
    s.add_argument("--alias", default="production", help="alias to set (default: production)")
    s.set_defaults(func=cmd_promote)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (RegistryError, LookupError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
