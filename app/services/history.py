"""The runs history and run comparison, as plain tables built from the run-tracking database.

Everything here reads rows through :class:`db.runs.RunTracker` and returns pandas DataFrames or plain dicts, so
the Streamlit pages only lay them out. Runs of every kind and age are accepted: metrics, config keys or events a
run never recorded come out as missing values (``None`` / NaN), never as errors.

Metric names are looked up under the engine's short keys first (``oa``, ``miou``, ``confusion``) and under
:func:`core.tasks.metrics.metrics_from_confusion`'s long ones (``overall_accuracy``, ``mean_iou``,
``confusion_matrix``), at the top level of a run's metrics or one level down (``test``, ``evaluation``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from db.models import RunRow
from db.runs import RunTracker

log = logging.getLogger(__name__)

ALIASES: dict[str, tuple[str, ...]] = {
    "oa": ("oa", "overall_accuracy", "test_oa"),
    "kappa": ("kappa",),
    "miou": ("miou", "mean_iou"),
    "macro_f1": ("macro_f1",),
    "micro_f1": ("micro_f1",),  # multi-label scene classifiers
    "best_val_accuracy": ("best_val_accuracy", "val_accuracy"),
    "train_seconds": ("train_seconds", "training_seconds"),
    "samples_per_s": ("samples_per_s", "throughput"),
    "per_class": ("per_class",),
}
_NESTED = ("test", "evaluation", "eval", "metrics", "training", "train")

TABLE_COLUMNS = [
    "id",
    "kind",
    "started",
    "scene",
    "model",
    "scheme",
    "workers",
    "status",
    "phase",
    "epochs",
    "best_val_accuracy",
    "test_oa",
    "assessed_oa",
    "miou",
    "macro_f1",
    "micro_f1",
    "rf_oa",
    "rf_macro_f1",
    "vs_rf",
    "steps",
    "train_seconds",
    "samples_per_s",
]


def metric(metrics: dict[str, Any] | None, name: str) -> Any:
    """The value of metric ``name`` (a key of :data:`ALIASES` or any key) in a run's metrics, or None."""
    if not metrics:
        return None
    names = ALIASES.get(name, (name,))
    for key in names:
        if key in metrics and metrics[key] is not None:
            return metrics[key]
    for nest in _NESTED:
        sub = metrics.get(nest)
        if isinstance(sub, dict):
            for key in names:
                if key in sub and sub[key] is not None:
                    return sub[key]
    return None


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def run_summary(row: RunRow) -> dict[str, Any]:
    """One history-table row (see :data:`TABLE_COLUMNS`) from a run row of any kind."""
    cfg = row.config or {}
    m = row.metrics or {}
    # an assessment's OA is estimated from a reference sample (with its CI), not scored on the test split
    assessed = _num((m.get("overall") or {}).get("overall_accuracy")) if isinstance(m.get("overall"), dict) else None
    workers = cfg.get("num_workers") or (cfg.get("cluster") or {}).get("n_workers")
    if workers is None and row.cluster:
        workers = row.cluster.get("n_workers")
    return {
        "id": row.id,
        "kind": row.kind,
        "started": row.started_at or row.created_at,
        "scene": cfg.get("scene"),
        "model": cfg.get("model"),
        "scheme": cfg.get("scheme"),
        "workers": workers,
        "status": row.status,
        "phase": row.phase,
        "epochs": m.get("epochs_run") or m.get("epochs_done") or cfg.get("epochs"),
        "best_val_accuracy": _num(metric(m, "best_val_accuracy")),
        "test_oa": None if assessed is not None else _num(metric(m, "oa")),
        "assessed_oa": assessed,
        "miou": _num(metric(m, "miou")),
        "macro_f1": _num(metric(m, "macro_f1")),
        "micro_f1": _num(metric(m, "micro_f1")),
        "rf_oa": _num((m.get("rf") or {}).get("oa")),
        "rf_macro_f1": _num((m.get("rf") or {}).get("macro_f1")),
        "vs_rf": _vs_rf(m),
        "steps": m.get("steps") or (m.get("training") or {}).get("steps_run"),
        "train_seconds": _num(metric(m, "train_seconds")),
        "samples_per_s": _num(metric(m, "samples_per_s")),
    }


def _vs_rf(metrics: dict[str, Any]) -> str | None:
    """``"wins"`` / ``"loses"``: the deep model against the random forest fitted beside it (None: no RF)."""
    verdict = metrics.get("verdict")
    if not isinstance(verdict, dict):
        return None
    return "wins" if verdict.get("deep_wins") else "loses"


def rf_comparison(row: RunRow) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The deep model and the random forest fitted beside it (pipelines, :mod:`jobs.rf_beside`), side by side.

    Returns a table with one row per score (``OA``, ``macro F1``, then ``F1 <class>`` for every class) and the
    columns ``score``, ``deep``, ``rf``, ``difference`` (deep - rf), and the stored verdict (``{"deep_wins",
    "text"}``); an empty table and None for a run without an RF.
    """
    m = row.metrics or {}
    rf = m.get("rf")
    cols = ["score", "deep", "rf", "difference"]
    if not isinstance(rf, dict):
        return pd.DataFrame(columns=cols), None
    deep_f1 = _per_class_f1(m)
    rows = [
        ("OA", _num(metric(m, "oa")), _num(rf.get("oa"))),
        ("macro F1", _num(metric(m, "macro_f1")), _num(rf.get("macro_f1"))),
        *((f"F1 {c}", deep_f1.get(c), _num(f)) for c, f in (rf.get("per_class_f1") or {}).items()),
    ]
    df = pd.DataFrame([(s, d, r, None if d is None or r is None else d - r) for s, d, r in rows], columns=cols)
    return df, m.get("verdict") if isinstance(m.get("verdict"), dict) else None


def runs_table(tracker: RunTracker, kind: str | None = None, limit: int = 500) -> pd.DataFrame:
    """The history table, newest run first: one row per run with the columns of :data:`TABLE_COLUMNS`."""
    rows = [run_summary(r) for r in tracker.list(kind=kind, limit=limit)]
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    df["started"] = pd.to_datetime(df["started"])
    return df


def filter_runs(
    df: pd.DataFrame,
    statuses: Sequence[str] = (),
    scenes: Sequence[str] = (),
    models: Sequence[str] = (),
    kinds: Sequence[str] = (),
    text: str = "",
) -> pd.DataFrame:
    """Rows of the history table matching every non-empty filter (``text``: substring of any cell, any case)."""
    out = df
    for col, values in (("status", statuses), ("scene", scenes), ("model", models), ("kind", kinds)):
        if values:
            out = out[out[col].isin(list(values))]
    if text:
        needle = text.lower()
        mask = out.astype(str).apply(lambda c: c.str.lower().str.contains(needle, regex=False)).any(axis=1)
        out = out[mask]
    return out


def table_csv(df: pd.DataFrame) -> bytes:
    """The table as UTF-8 CSV bytes (for a download button)."""
    return df.to_csv(index=False).encode("utf-8")


# ---- comparison ----------------------------------------------------------------------------------------------
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "geometry":
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (dict, list, tuple)):
            out[key] = str(v) if len(str(v)) <= 80 else f"{str(v)[:77]}..."
        else:
            out[key] = v
    return out


def config_diff(rows: Sequence[RunRow]) -> pd.DataFrame:
    """Configs side by side: index = flattened config key, one column ``run <id>`` per run, plus a boolean
    ``differs`` column (True where the runs' values are not all equal). Differing keys come first."""
    flat = {f"run {r.id}": _flatten(r.config or {}) for r in rows}
    keys = sorted({k for f in flat.values() for k in f})
    df = pd.DataFrame({col: [f.get(k) for k in keys] for col, f in flat.items()}, index=keys, dtype=object)
    df["differs"] = [len({repr(v) for v in df.loc[k, list(flat)]}) > 1 for k in keys]
    return df.sort_values("differs", ascending=False, kind="stable")


def epoch_curves(tracker: RunTracker, run_ids: Iterable[int]) -> pd.DataFrame:
    """Per-epoch figures of runs in long form: columns ``run, epoch, metric, value`` (loss, accuracy,
    val_loss, val_accuracy, seconds as recorded by ``epoch`` events; epoch numbers as recorded)."""
    recs: list[dict[str, Any]] = []
    for rid in run_ids:
        for i, ev in enumerate(tracker.events(rid, kind="epoch")):
            epoch = ev.epoch if ev.epoch is not None else (ev.data or {}).get("epoch", i + 1)
            for name, value in (ev.data or {}).items():
                v = _num(value)
                if name != "epoch" and v is not None:
                    recs.append({"run": f"run {rid}", "epoch": int(epoch), "metric": name, "value": v})
    return pd.DataFrame(recs, columns=["run", "epoch", "metric", "value"])


def _per_class_f1(metrics: dict[str, Any]) -> dict[str, float | None]:
    per = metric(metrics, "per_class")
    if not isinstance(per, dict):
        return {}
    out: dict[str, float | None] = {}
    for cid, v in per.items():
        if isinstance(v, dict):
            out[str(v.get("name") or cid)] = _num(v.get("f1"))
        else:
            out[str(cid)] = _num(v)
    return out


def per_class_f1(rows: Sequence[RunRow]) -> pd.DataFrame:
    """Per-class F1 of runs, long form: columns ``run, class, f1`` (classes a run has no F1 for are left out)."""
    recs = [
        {"run": f"run {r.id}", "class": name, "f1": f1}
        for r in rows
        for name, f1 in _per_class_f1(r.metrics or {}).items()
        if f1 is not None
    ]
    return pd.DataFrame(recs, columns=["run", "class", "f1"])


def confusion(row: RunRow, class_names: Mapping[int, str] | None = None) -> pd.DataFrame | None:
    """A run's test confusion matrix (rows = reference, columns = prediction), classes in ascending id order and
    labelled by name (the run's own names, else ``class_names`` (e.g. the scene's), else the id), or None when the
    run has none. Accepts ``{"confusion": {"matrix", "ids", "names"}}`` and the flat ``confusion_matrix`` /
    ``class_ids`` / ``class_names`` layout."""
    m = row.metrics or {}
    c = metric(m, "confusion")
    matrix: Any = None
    ids: Any = None
    names: Any = None
    if isinstance(c, dict):
        matrix, ids, names = c.get("matrix"), c.get("ids") or c.get("class_ids"), c.get("names") or c.get("class_names")
    elif isinstance(c, list):
        matrix = c
    if matrix is None:
        matrix, ids, names = metric(m, "confusion_matrix"), metric(m, "class_ids"), metric(m, "class_names")
    if not matrix:
        return None
    n = len(matrix)
    ids = list(ids or range(1, n + 1))[:n]
    names = list(names or [])
    if len(ids) != n or any(len(r) != n for r in matrix):
        log.warning("run %d has a malformed confusion matrix; not shown", row.id)
        return None
    labels = []
    for i, cid in enumerate(ids):
        own = str(names[i]) if i < len(names) and names[i] is not None else str(cid)
        known = (class_names or {}).get(int(cid)) if str(cid).isdigit() else None
        labels.append(known if own == str(cid) and known else own)
    order = sorted(range(n), key=lambda i: (0, int(ids[i])) if str(ids[i]).isdigit() else (1, str(ids[i])))
    labels = [labels[i] for i in order]
    ordered = [[matrix[i][j] for j in order] for i in order]
    return pd.DataFrame(ordered, index=pd.Index(labels, name="reference"), columns=pd.Index(labels, name="predicted"))


def confusion_long(row: RunRow, normalise: bool = True, class_names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """The confusion matrix in long form (``reference, predicted, count, share``) for a heatmap, classes in id
    order; ``share`` is the count divided by its reference row's total (recall per cell). Empty when the run has
    no matrix."""
    cm = confusion(row, class_names)
    if cm is None:
        return pd.DataFrame(columns=["reference", "predicted", "count", "share"])
    long = cm.stack().rename("count").reset_index()
    totals = long.groupby("reference", sort=False)["count"].transform("sum")
    long["share"] = (long["count"] / totals.where(totals > 0)).fillna(0.0) if normalise else long["count"]
    return long


def worker_traffic(tracker: RunTracker, run_ids: Iterable[int]) -> pd.DataFrame:
    """Per-worker statistics of runs: columns ``run, worker, rank, phase, bytes_sent, bytes_recv, cpu_percent,
    peak_mem_bytes, samples`` (one row per recorded stat)."""
    recs = [
        {
            "run": f"run {rid}",
            "worker": w.worker,
            "rank": w.rank,
            "phase": w.phase,
            "bytes_sent": w.bytes_sent,
            "bytes_recv": w.bytes_recv,
            "cpu_percent": w.cpu_percent,
            "peak_mem_bytes": w.peak_mem_bytes,
            "samples": w.samples,
        }
        for rid in run_ids
        for w in tracker.worker_stats(rid)
    ]
    return pd.DataFrame(
        recs,
        columns=[
            "run",
            "worker",
            "rank",
            "phase",
            "bytes_sent",
            "bytes_recv",
            "cpu_percent",
            "peak_mem_bytes",
            "samples",
        ],
    )


def throughput(rows: Sequence[RunRow], curves: pd.DataFrame) -> pd.DataFrame:
    """Per run: ``samples_per_s`` (recorded metric) and ``mean_epoch_seconds`` (from epoch events)."""
    secs = curves[curves["metric"] == "seconds"].groupby("run")["value"].mean() if not curves.empty else pd.Series()
    recs = [
        {
            "run": f"run {r.id}",
            "samples_per_s": _num(metric(r.metrics, "samples_per_s")),
            "train_seconds": _num(metric(r.metrics, "train_seconds")),
            "mean_epoch_seconds": _num(secs.get(f"run {r.id}")),
        }
        for r in rows
    ]
    return pd.DataFrame(recs, columns=["run", "samples_per_s", "train_seconds", "mean_epoch_seconds"])
