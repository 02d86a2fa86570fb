"""Acceptance of the engine on real data: strzegom, a real 2-worker LocalCluster, 2 Horovod ranks, the whole
GUI pipeline (tile -> train -> predict -> evaluate) through the same tracked-run path the CLI and the app use."""

from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.data.samples import register_samples
from db.runs import RunTracker
from db.scenes import SceneStore
from jobs.engine_kinds import run_pipeline
from jobs.pipeline import PipelineJobConfig
from jobs.runner import execute

pytestmark = [pytest.mark.cluster, pytest.mark.horovod, pytest.mark.shared_data, pytest.mark.slow]


def _pipeline(db_url: str, home: Path, client, **kw) -> tuple[int, object]:
    store = SceneStore(db_url)
    register_samples(None, store, home, only=["strzegom"])
    config = PipelineJobConfig(
        scene="strzegom",
        scheme="data_parallel",
        num_workers=2,
        epochs=1,
        max_steps=4,
        split={"method": "date", "test_date": "2023-03-01"},
        **kw,
    )
    run_id = execute(config, run_pipeline, db_url=db_url, client=client, scene_id=store.get("strzegom").id)
    return run_id, RunTracker(db_url).get(run_id)


def test_unet_pipeline_on_strzegom(db_url, home, cluster_client):
    run_id, row = _pipeline(
        db_url,
        home,
        cluster_client,
        model="unet",
        model_params={"width": 4, "depth": 2},
        batch_size=4,
        tiling={"tile_size": 64},
    )
    assert row.status == "succeeded", row.error
    train = row.metrics["training"]
    assert train["num_ranks"] == 2 and train["weights_identical"], train["checksums"]
    # 401 px: windows at 0, 64, ..., 320 plus one moved back to end at the edge (337): 7 x 7 of the held-out date
    assert row.metrics["tiling"]["counts"]["test"] == 49
    assert 0 <= row.metrics["oa"] <= 1 and row.metrics["test"]["n_pixels"] > 1000
    assert Path(row.artifacts["model"], "model.keras").exists()
    assert Path(row.artifacts["checkpoint"], "model.keras").exists()
    assert [e.phase for e in RunTracker(db_url).events(run_id, kind="progress")][-1] == "evaluation"
    assert row.metrics["prediction_date"] == "2023-03-01"  # the held-out date is the one mapped

    scene = SceneStore(db_url).get("strzegom")
    with (
        rasterio.open(row.artifacts["prediction"]) as pred,
        rasterio.open(scene.acquisition("2023-03-01").files["s2"][0]) as src,
    ):
        assert pred.crs == src.crs and pred.transform == src.transform and pred.shape == src.shape == (401, 401)
        assert pred.nodata == 0 and pred.colormap(1)[1][:3] == tuple(
            int(scene.classes[0].color[i : i + 2], 16) for i in (1, 3, 5)
        )
        assert pred.overviews(1), "a COG has internal overviews"
        tiled = pred.read(1)
        image = src.read()

    # Seams: the tiled map equals one whole-scene prediction away from the scene edge.
    from core.inference.predict import model_context
    from core.models.bundle import load_bundle

    model, meta = load_bundle(row.artifacts["model"])
    x = meta.normalise("s2", image[:, :400, :400].transpose(1, 2, 0))[None]
    whole = np.asarray(meta.class_ids)[model.predict(x, verbose=0)[0].argmax(-1)]
    r = model_context(meta).radius
    inner = (slice(r, 400 - r), slice(r, 400 - r))
    assert (tiled[inner] == whole[inner]).mean() == 1.0


def test_patch_cnn_pipeline_classifies_every_pixel(db_url, home, cluster_client):
    _, row = _pipeline(
        db_url,
        home,
        cluster_client,
        model="patch_cnn",
        model_params={"width": 8},
        batch_size=32,
        sampling={"patch_size": 9, "per_class": 30},
    )
    assert row.status == "succeeded", row.error
    assert row.metrics["training"]["weights_identical"]
    counts = row.metrics["tiling"]["counts"]
    assert counts["train"] > 0 and counts["test"] > 0
    with rasterio.open(row.artifacts["prediction"]) as pred:
        classes = pred.read(1)
        assert pred.shape == (401, 401) and (classes > 0).all()  # every pixel of the AOI has a class
    assert set(np.unique(classes)) <= {c["id"] if isinstance(c, dict) else c for c in range(1, 11)}
    assert 0 <= row.metrics["macro_f1"] <= 1
