"""Baseline scores shipped with tsfm, so a benchmark table costs seconds instead of minutes.

The statsforecast baselines take about 7.5 minutes on the dev suite with 2 cores. Their scores
are deterministic, so tsfm ships them (``tsfm/eval/precomputed/<suite>.json``) keyed exactly
like the forecast cache (:func:`tsfm.eval.baselines.cached_predict`: baseline, max context,
horizon, levels, season length and a hash of every window's values) plus the metric names.
A changed dataset, package version or setting changes the key, and the baseline is computed
again (never a stale score). Regenerate after such a change with::

    python -m tsfm.evaluate model=seasonal_naive eval=dev save_baseline_scores=true
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from tsfm.eval.protocol import Score

log = logging.getLogger(__name__)

DIR = Path(__file__).resolve().parent / "precomputed"


def score_key(cache_key: str, metrics: Sequence[str]) -> str:
    return f"{cache_key}|{','.join(sorted(metrics))}"


def _path(suite: str) -> Path:
    return DIR / f"{suite}.json"


def load(suite: str) -> dict[str, dict]:
    """The shipped scores of ``suite`` (empty when none are shipped or the file is unreadable)."""
    path = _path(suite)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return dict(data["scores"])
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable precomputed baseline scores %s (%s); computing them instead", path, exc)
        return {}


def lookup(table: dict[str, dict], cache_key: str, metrics: Sequence[str]) -> Score | None:
    hit = table.get(score_key(cache_key, metrics))
    if hit is None:
        return None
    return Score(metrics={k: float(v) for k, v in hit["metrics"].items()}, fallbacks=int(hit.get("fallbacks", 0)))


def save(suite: str, entries: dict[str, dict], directory: Path | None = None) -> Path:
    """Write ``entries`` (``score_key -> {dataset, baseline, metrics, fallbacks}``) for ``suite``, atomically."""
    path = (directory or DIR) / f"{suite}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    body = {
        "note": "statsforecast baseline scores; regenerate: python -m tsfm.evaluate model=seasonal_naive "
        f"eval={suite} save_baseline_scores=true",
        "scores": dict(sorted(entries.items())),
    }
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    tmp.replace(path)
    return path
