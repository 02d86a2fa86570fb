"""Patch-store write and read figures on houston_crop (the two-modality store of ``benchmarks/papers.py``'s table 2).

Usage: ``python -m benchmarks.patch_store [--per-class 600] [--patch 17] [--repeats 3]``

Tiles houston_crop into patches (RGB 17 px + HSI 5 px, 48 bands; spatial blocks 64 px, 0.6/0.2/0.2) on a
LocalCluster of 2 worker processes in a temporary WORKBENCH_HOME, then prints:

* the tile job's wall time, and the files and MiB the store holds on disk;
* loading the train split as a training rank does (``store.shard`` then ``store.read`` of the sorted indices), for
  one rank and for rank 0 of 2 (best of ``--repeats``, page cache warm);
* reading the test split 16 samples at a time, as an evaluate run does.

Takes ~30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.accuracy import bench

SIZE = 512  # houston_crop label grid (RGB) side, px
MARGIN = 16  # AOI margin, as benchmarks/papers.py


def disk_usage(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``."""
    files = [Path(d) / f for d, _, fs in os.walk(path) for f in fs]
    return len(files), sum(f.stat().st_size for f in files)


def best_of(repeats: int, fn: Callable[[], None]) -> float:
    """Least wall time of ``repeats`` calls of ``fn``, s."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    from core.configs import AOIConfig, SamplingConfig, SplitConfig, TileJobConfig
    from core.tiling.job import run_tile_job
    from core.tiling.store import TileStore
    from db.scenes import SceneStore

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-class", type=int, default=600)
    p.add_argument("--patch", type=int, default=17, help="RGB patch side, px")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    m = MARGIN
    aoi = AOIConfig(
        crs="pixel",
        geometry={
            "type": "Polygon",
            "coordinates": [[(m, m), (SIZE - m, m), (SIZE - m, SIZE - m), (m, SIZE - m), (m, m)]],
        },
    )
    cfg = TileJobConfig(
        scene="houston_crop",
        mode="patches",
        modalities=("rgb", "hsi"),
        aoi=aoi,
        sampling=SamplingConfig(patch_size=args.patch, per_class=args.per_class, seed=0),
        split=SplitConfig(method="spatial", block_size=64, fractions=(0.6, 0.2, 0.2), seed=0),
    )
    with bench(["houston_crop"]) as b:
        scene = SceneStore(b.db_url).get("houston_crop")
        path = b.home / "patches.zarr"
        t0 = time.perf_counter()
        info = run_tile_job(cfg, scene, b.client, path)
        write_s = time.perf_counter() - t0
        files, nbytes = disk_usage(path)

        def load(rank: int, size: int) -> None:  # as core.training.loop._load_split reads a rank's shard
            store = TileStore(path)
            store.read("train", np.sort(store.shard("train", rank, size)))

        def evaluate() -> None:  # as core.evaluation.job reads a split
            store = TileStore(path)
            idx = store.valid_indices("test")
            for i in range(0, idx.size, 16):
                store.read("test", idx[i : i + 16])

        one, half, ev = (best_of(args.repeats, f) for f in (lambda: load(0, 1), lambda: load(0, 2), evaluate))
        chunks = {k: TileStore(path).array("train", f"x_{k}").chunks[0] for k in info.modalities}
    print(f"houston_crop patches {info.sample_size}, counts {info.counts}, samples per x chunk {chunks}")
    print(
        f"write {write_s:.1f} s | {files} files, {nbytes / 2**20:.1f} MiB | load train ({info.counts['train']}) "
        f"{one:.2f} s | rank 0 of 2 {half:.2f} s | test in batches of 16 {ev:.2f} s"
    )


if __name__ == "__main__":
    main()
