"""Resumable prediction on the session's real 2-worker cluster: a cancelled run is finished by a resumed one that
computes only the missing windows, and its maps equal those of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from core.configs import AOIConfig
from core.errors import ConfigError, JobCancelledError
from tests.core.inference.test_predict import dense_bundle, make_scene

pytestmark = pytest.mark.cluster


def _read(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with rasterio.open(path) as src:
        return src.read(1), {"transform": src.transform, "crs": src.crs, "nodata": src.nodata}


def test_cancelled_prediction_resumes_with_only_the_missing_windows(tmp_path: Path, cluster_client: Any) -> None:
    from core.inference.predict import run_predict

    data = np.random.default_rng(0).random((3, 70, 90), dtype=np.float32)
    scene = make_scene(tmp_path, data)
    bundle, _, _ = dense_bundle(tmp_path, 3)
    # one tile per task (chunk_px = the tile), so progress and cancellation come window by window
    kw: dict[str, Any] = dict(tile_size=24, overlap=4, min_overview_size=8, chunk_px=24)
    whole = run_predict(bundle, scene, AOIConfig(), cluster_client, tmp_path / "a" / "map.tif", **kw)

    out = tmp_path / "b" / "map.tif"
    written: list[int] = []
    with pytest.raises(JobCancelledError):
        run_predict(
            bundle,
            scene,
            AOIConfig(),
            cluster_client,
            out,
            progress=lambda d, t: written.append(d),
            cancelled=lambda: len(written) >= 12,
            **kw,
        )
    parts = sorted((out.parent / "map.tif.parts").glob("r*_c*.npz"))
    assert not out.exists() and len(parts) == len(written) >= 12

    with pytest.raises(ConfigError, match=r"other settings \(\['plan', 'windows'\] differ\)"):
        run_predict(bundle, scene, AOIConfig(), cluster_client, out, resume=True, **{**kw, "overlap": 2})
    seen: list[int] = []
    resumed = run_predict(
        bundle, scene, AOIConfig(), cluster_client, out, resume=True, progress=lambda d, t: seen.append(d), **kw
    )
    assert resumed["resumed_windows"] == len(parts) and resumed["windows"] == whole["windows"] == 30
    assert len(seen) == 30 - len(parts) and seen[0] == len(parts) + 1 and seen[-1] == 30  # only the missing ones
    assert resumed["class_pixels"] == whole["class_pixels"]
    for name in ("map.tif", "map_confidence.tif"):
        (a, pa), (b, pb) = _read(tmp_path / "a" / name), _read(out.parent / name)
        assert pa == pb and np.array_equal(a, b), name
    assert not (out.parent / "map.tif.parts").exists()  # finished: the ledger is gone
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_predict(bundle, scene, AOIConfig(), cluster_client, out, resume=True, **kw)
