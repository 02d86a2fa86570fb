"""Test helper: a train job run the way the jobs layer runs it (a tracked run; the ranks report to its rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_run(config: Any, client: Any, db_url: str, store: str | Path) -> tuple[Any, int, dict[str, Any]]:
    """Run ``config`` on ``store`` through :func:`jobs.runner.execute` and :func:`jobs.engine_kinds.train_on_store`.

    Returns:
        ``(tracker, run_id, out)``: ``out`` is the training job's result (``metrics``, ``artifacts``, ``ranks``).
        Errors propagate after the runner marked the run failed or cancelled.
    """
    from db.runs import RunTracker
    from jobs.engine_kinds import train_on_store
    from jobs.runner import execute

    tracker = RunTracker(db_url)
    run_id = tracker.create("train", config.model_dump(mode="json"))
    out: dict[str, Any] = {}

    def executor(cfg: Any, ctx: Any) -> dict[str, Any]:
        out.update(train_on_store(cfg, ctx, Path(store)))
        return {"metrics": out["metrics"], "artifacts": out["artifacts"]}

    execute(config, executor, run_id=run_id, db_url=db_url, client=client)
    return tracker, run_id, out
