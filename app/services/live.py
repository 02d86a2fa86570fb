"""A running job as the Live run page shows it: phase, progress, ETA, loss curve and workers, from the database.

The state of a run lives only in the database (the job runs detached), so this works for a run launched by
another browser tab, by the CLI, or before the app was restarted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from db.models import utcnow
from db.runs import ACTIVE, RunTracker

PHASES = ("tiling", "training", "inference", "evaluation")


@dataclass(frozen=True)
class LiveStatus:
    """A run's state at one moment.

    Attributes:
        fraction: progress of the current phase in [0, 1].
        eta_seconds: estimated seconds left in the current phase (None until two progress updates exist).
        phase_index: 1-based position of ``phase`` in :data:`PHASES` (0 when unknown).
        steps: step events (``epoch, step, loss, samples_per_s, rank``), newest last.
        epochs: epoch events in long form (``epoch, metric, value``).
        restarts: automatic training restarts after a lost worker (``restart, at, reason, ranks_before,
            ranks_after, from_epoch, waited_s``), oldest first.
    """

    run_id: int
    kind: str
    status: str
    phase: str | None
    done: int
    total: int
    fraction: float
    eta_seconds: float | None
    epoch: int | None
    step: int | None
    error: str | None
    active: bool
    phase_index: int
    elapsed_seconds: float | None
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    workers: pd.DataFrame = field(default_factory=pd.DataFrame)
    restarts: pd.DataFrame = field(default_factory=pd.DataFrame)


RESTART_COLUMNS = ["restart", "at", "reason", "ranks_before", "ranks_after", "from_epoch", "waited_s"]


def estimate_eta(points: list[tuple[datetime, int]], total: int, now: datetime | None = None) -> float | None:
    """Seconds left for ``total`` units given ``(time, done)`` progress points of one phase, from the mean rate
    since the first point; None when no rate can be measured yet."""
    if len(points) < 2 or total <= 0:
        return None
    (t0, d0), (t1, d1) = points[0], points[-1]
    secs = (t1 - t0).total_seconds()
    if d1 <= d0 or secs <= 0:
        return None
    rate = (d1 - d0) / secs
    remaining = max(0, total - d1) / rate
    if now is not None:  # time already spent since the last update counts against the estimate
        remaining = max(0.0, remaining - (now - t1).total_seconds())
    return remaining


def live_status(tracker: RunTracker, run_id: int) -> LiveStatus:
    """The current state of run ``run_id`` (raises :class:`core.errors.RunNotFoundError` for unknown ids)."""
    tracker.reap_dead_runs()
    row = tracker.get(run_id)
    events = tracker.events(run_id)
    points = [
        (e.ts, int((e.data or {}).get("done", 0))) for e in events if e.kind == "progress" and e.phase == row.phase
    ]
    total = row.progress_total or 0
    done = row.progress_done or 0
    fraction = min(1.0, done / total) if total else (1.0 if row.status == "succeeded" else 0.0)
    active = row.status in ACTIVE
    epoch = step = None
    step_recs: list[dict[str, Any]] = []
    epoch_recs: list[dict[str, Any]] = []
    restart_recs: list[dict[str, Any]] = []
    for e in events:
        data = e.data or {}
        if e.epoch is not None:
            epoch = e.epoch
        if e.step is not None:
            step = e.step
        if e.kind == "step":
            # training writes one event per logged step holding every rank's figures under "ranks"
            for r in data.get("ranks") or [data]:
                step_recs.append(
                    {
                        "epoch": e.epoch,
                        "step": e.step,
                        "loss": r.get("loss"),
                        "samples_per_s": r.get("samples_per_s"),
                        "rank": r.get("rank"),
                        "ts": e.ts,
                    }
                )
        elif e.kind == "epoch":
            for name in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
                if data.get(name) is not None:
                    epoch_recs.append({"epoch": e.epoch, "metric": name, "value": float(data[name])})
        elif e.kind == "restart":
            restart_recs.append({"at": e.ts, **{k: data.get(k) for k in RESTART_COLUMNS if k != "at"}})
    start = row.started_at or row.created_at
    end = row.finished_at or utcnow()
    workers = _worker_table(tracker, run_id)
    return LiveStatus(
        run_id=row.id,
        kind=row.kind,
        status=row.status,
        phase=row.phase,
        done=done,
        total=total,
        fraction=fraction,
        eta_seconds=estimate_eta(points, total, utcnow()) if active else None,
        epoch=epoch,
        step=step,
        error=row.error,
        active=active,
        phase_index=PHASES.index(row.phase) + 1 if row.phase in PHASES else 0,
        elapsed_seconds=(end - start).total_seconds() if start else None,
        steps=pd.DataFrame(step_recs, columns=["epoch", "step", "loss", "samples_per_s", "rank", "ts"]),
        epochs=pd.DataFrame(epoch_recs, columns=["epoch", "metric", "value"]),
        workers=workers,
        restarts=pd.DataFrame(restart_recs, columns=RESTART_COLUMNS),
    )


def _worker_table(tracker: RunTracker, run_id: int) -> pd.DataFrame:
    """The latest figures per worker of run ``run_id`` (CPU, peak memory, traffic, samples)."""
    stats = tracker.worker_stats(run_id)
    workers = pd.DataFrame(
        [
            {
                "worker": w.worker,
                "rank": w.rank,
                "phase": w.phase,
                "cpu_percent": w.cpu_percent,
                "peak_mem_MiB": (w.peak_mem_bytes or 0) / 2**20,
                "MiB_sent": w.bytes_sent / 2**20,
                "MiB_recv": w.bytes_recv / 2**20,
                "samples": w.samples,
                "at": w.ts,
            }
            for w in stats
        ]
    )
    if not workers.empty:  # latest figure per worker
        workers = workers.groupby("worker", as_index=False).last()
    return workers


def active_run_ids(tracker: RunTracker, limit: int = 50) -> list[int]:
    """Ids of pending or running runs, newest first (reaps dead ones first)."""
    return [r.id for r in tracker.list(limit=limit) if r.status in ACTIVE]


def format_seconds(seconds: float | None) -> str:
    """``75.2`` -> ``"1 min 15 s"``; None -> ``"-"``."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


WORKER_COLUMNS = {
    "worker": ("worker", None),
    "rank": ("rank", None),
    "phase": ("phase", None),
    "cpu_percent": ("CPU %", 0),
    "peak_mem_MiB": ("peak memory (MiB)", 0),
    "MiB_sent": ("sent (MiB)", 1),
    "MiB_recv": ("received (MiB)", 1),
    "samples": ("samples", None),
    "at": ("updated", None),
}
"""Live status column -> (what the table calls it, decimals it is rounded to; None: as it is)."""


def workers_table(workers: pd.DataFrame) -> pd.DataFrame:
    """The per-worker figures as the Live page shows them: readable column names, numbers rounded."""
    out = workers[[c for c in WORKER_COLUMNS if c in workers.columns]].copy()
    for col, (_, decimals) in WORKER_COLUMNS.items():
        if decimals is not None and col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").round(decimals)
    return out.rename(columns={c: name for c, (name, _) in WORKER_COLUMNS.items()})


FINISHED: dict[str, str] = {
    "vectorize": "Polygons written (GeoPackage, GeoJSON): they are a layer of run {parent}'s map on the **Map "
    "review** page, with their downloads (GPKG, GeoJSON, CSV).",
    "sample": "Reference sample drawn (GeoPackage, CSV): its points are a layer of run {parent}'s map on the **Map "
    "review** page, with their downloads; once photo-interpreted, assess the map there.",
    "assess": "Assessment written: accuracy with confidence intervals and error-adjusted areas are on the **Runs** "
    "page (Area assessment), the report is its artifact.",
    "export_onnx": "ONNX model written: {onnx} (load it in QGIS Deepness).",
}
"""What a finished run of a kind that makes no map of its own tells the user ({parent}: its map's run)."""


def finished_message(
    kind: str, config: dict[str, Any] | None, artifacts: dict[str, Any] | None, run_id: int | None = None
) -> tuple[str, int | None]:
    """The success message of run ``run_id`` (of ``kind``), and the run whose map it points to on Map review (the
    run itself when it made a map, the map it was made from, or None)."""
    artifacts = artifacts or {}
    parent = (config or {}).get("prediction_run")
    if artifacts.get("prediction"):
        return "Run finished. Review its map on the **Map review** page.", run_id
    if kind in FINISHED:
        text = FINISHED[kind].format(parent=parent, onnx=artifacts.get("onnx", "?"))
        return text, parent if isinstance(parent, int) else None
    if artifacts.get("model"):
        return "Run finished: its model is trained (no map was made). Its scores are on the **Runs** page.", None
    return "Run finished. Its figures are on the **Runs** page.", None
