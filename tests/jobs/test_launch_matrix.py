"""The first click works: every model the launch form offers on every sample scene, with the form's defaults.

Each combination goes through the code the form uses (:func:`app.services.launch_form.build_config` with the form's
default values, then :func:`app.services.launch_form.preflight`, i.e. :func:`jobs.preflight.check`, which states the
config in full) and, when pre-flight lets it through, runs as the detached driver runs it
(:func:`jobs.runner.execute`) on the session's real 2-worker cluster with real Horovod ranks: 1 epoch of 2 steps, on
a small AOI of the larger scenes. A combination must either end ``succeeded`` with metrics (and a map when its task
makes one) or be refused by pre-flight with a message; a run that fails is a bug. The matrix is printed (run with
``-s`` to see it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pyproj import Transformer

from core.data.scene import Scene

AOI_PX = 200
"""Side of the centred AOI on scenes larger than 256 px (label-grid pixels); smaller scenes are used whole."""
FORM = {
    "scheme": "data_parallel",
    "num_workers": 2,
    "epochs": 1,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "split_method": "spatial",
    "fractions": (0.6, 0.2, 0.2),
    "per_class": 40,
}
"""The form's defaults (tile size auto, patch size 9, spatial split, 2 data-parallel workers), shortened."""


def _aoi(scene: Scene) -> dict[str, Any] | None:
    """A centred AOI_PX square in EPSG:4326, or None (whole scene) for small or non-georeferenced scenes."""
    g = scene.primary
    if not scene.georeferenced or min(g.height, g.width) <= 256:
        return None
    a, _, c, _, e, f = g.transform
    r0, c0 = (g.height - AOI_PX) // 2, (g.width - AOI_PX) // 2
    to_wgs = Transformer.from_crs(scene.crs_wkt, "EPSG:4326", always_xy=True)
    ring = [
        (c + a * cc, f + e * rr)
        for cc, rr in ((c0, r0), (c0 + AOI_PX, r0), (c0 + AOI_PX, r0 + AOI_PX), (c0, r0 + AOI_PX), (c0, r0))
    ]
    return {"type": "Polygon", "coordinates": [[list(to_wgs.transform(x, y)) for x, y in ring]]}


def _values(scene: Scene, model: str, task: str) -> dict[str, Any]:
    values = {
        **FORM,
        "scene": scene.name,
        "model": model,
        "aoi": _aoi(scene),
        "size": 0 if task in ("dense", "multilabel") else 9,
    }
    if task == "baseline":
        values = {
            k: v
            for k, v in values.items()
            if k not in ("scheme", "num_workers", "epochs", "batch_size", "learning_rate")
        }
    return values


def _launch(scene: Scene, model: str, task: str, client: Any, db_url: str) -> tuple[str, str]:
    """(outcome, detail) of one combination."""
    from app.services.launch_form import build_config, preflight
    from core.errors import ConfigError
    from db.runs import RunTracker
    from jobs.kinds import get_kind
    from jobs.runner import execute

    try:
        config = build_config(_values(scene, model, task))
    except ConfigError as exc:
        return "refused", str(exc).splitlines()[-1]
    if hasattr(config, "train_options"):  # two steps (config.max_steps) keep the matrix fast; the RF beside every
        # pipeline is left out here (config.baseline): tests/jobs/test_pipeline.py checks it on a real scene
        config = config.model_copy(update={"max_steps": 2, "baseline": False})
    report = preflight(config, scene, cluster_workers=2)
    if not report.ok:
        return "refused", report.errors[0]
    assert report.config is not None
    try:
        rid = execute(
            report.config, get_kind(report.config.kind).executor, client=client, db_url=db_url, scene_id=scene.id
        )
    except Exception as exc:  # noqa: BLE001 - a failed run is reported in the matrix, then fails the test
        return "FAILED", f"{type(exc).__name__}: {exc}"[:300]
    row = RunTracker(db_url).get(rid)
    m, art = row.metrics or {}, row.artifacts or {}
    score = m.get("oa", m.get("micro_f1"))
    if row.status != "succeeded" or score is None:
        return "FAILED", f"status {row.status}, metrics {sorted(m)}"
    return "succeeded", f"score {score:.3f}" + (f", map {Path(art['prediction']).name}" if "prediction" in art else "")


@pytest.mark.matrix
@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.horovod
@pytest.mark.shared_data
def test_every_model_on_every_sample_scene(home: Path, db_url: str, cluster_client: Any, shared_data: Path) -> None:
    from app.services.launch_form import launch_models
    from core.data.samples import register_samples
    from core.models import get_model
    from core.tasks import get_task
    from db.scenes import SceneStore

    scenes = register_samples(shared_data, SceneStore(db_url), home)
    # the engine's models: toy models that other tests of the session register are left out
    models = {
        m: t
        for m, t in launch_models().items()
        if t == "baseline" or get_model(m).builder.__module__.startswith("core.")
    }
    matrix, t0 = [], time.perf_counter()
    for scene in scenes:
        for model, task in models.items():
            t = time.perf_counter()
            outcome, detail = _launch(scene, model, task, cluster_client, db_url)
            matrix.append((scene.name, model, outcome, round(time.perf_counter() - t, 1), detail))
            if outcome == "succeeded" and task != "baseline" and get_task(get_model(model).task).makes_map:
                assert "map" in detail, (scene.name, model, detail)
    width = max(len(s) for s, *_ in matrix)
    print(f"\nlaunch matrix ({time.perf_counter() - t0:.0f} s):")
    for s, m, outcome, secs, detail in matrix:
        print(f"  {s:<{width}}  {m:<15} {outcome:<9} {secs:>6.1f} s  {detail}")
    failed = [row for row in matrix if row[2] == "FAILED"]
    assert not failed, failed
    assert sum(1 for row in matrix if row[2] == "succeeded") >= 50
    by = {(s, m): o for s, m, o, *_ in matrix}
    assert by["strzegom", "unet"] == "succeeded" and by["houston_crop", "two_stream"] == "succeeded"
    assert by["landsat_rgb", "unet"] == "refused"  # no labels: refused before a run exists
