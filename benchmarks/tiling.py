"""Tiling throughput and worker memory on a large GeoTIFF, against the file's plain sequential read speed.

Usage::

    .venv/bin/python -m benchmarks.tiling [--size 20000] [--bands 3] [--tile 512] [--workdir /tmp/workbench-bench]

Generates (once; reused when present) a tiled, deflate-compressed uint16 GeoTIFF of ``size`` x ``size`` px and one of
half that side, under ``--workdir`` (never inside the repo). For each file it prints:

* the sequential read limit: one process reading the file block by block with rasterio (MB/s of decoded pixels);
* ``run_tile_job`` on a LocalCluster with 1 and 2 workers (1 thread each): tiles/s, MB/s and its ratio to the
  limit, and the peak RSS of each worker process (sampled every 0.2 s through ``client.run`` + psutil).
* the same ratio per CPU-second (MB per CPU-second of the workers vs of the sequential read), which stays
  meaningful when other jobs share the machine's cores and wall-clock figures drift.

Memory should not grow with the raster (the half-size and full-size runs should show about the same peak RSS).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from core.configs import SplitConfig, TileJobConfig, TilingConfig
from core.data.scene import Acquisition, Modality, Scene
from core.tiling.job import run_tile_job

BLOCK = 512


def make_geotiff(path: Path, size: int, bands: int) -> Path:
    """A ``size`` x ``size`` uint16 GeoTIFF (tiled 512 px, deflate + predictor 2): smooth fields plus noise."""
    if path.exists():
        with rasterio.open(path) as ds:
            if ds.width == size and ds.count == bands:
                return path
    tmp = path.with_suffix(".part.tif")
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=bands,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10, 0, 500000, 0, -10, 5600000),
        tiled=True,
        blockxsize=BLOCK,
        blockysize=BLOCK,
        compress="deflate",
        predictor=2,
        zlevel=1,
        interleave="pixel",
    )
    rng = np.random.default_rng(0)
    cols = np.arange(size, dtype=np.float32)
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, size, BLOCK):
            h = min(BLOCK, size - r0)
            rows = np.arange(r0, r0 + h, dtype=np.float32)[:, None]
            data = np.empty((bands, h, size), np.uint16)
            for b in range(bands):
                field = 2000 + 1500 * np.sin(rows / (300 + 50 * b)) * np.cos(cols / (400 + 70 * b))
                data[b] = field + rng.integers(0, 64, (h, size), dtype=np.uint16)
            dst.write(data, window=Window(0, r0, size, h))
    tmp.rename(path)
    return path


def sequential_read(path: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, MB decoded) to read the whole file block by block in this process."""
    t0, c0, nbytes = time.perf_counter(), time.process_time(), 0
    with rasterio.open(path) as ds:
        for _, win in ds.block_windows(1):
            nbytes += ds.read(window=win).nbytes
    return time.perf_counter() - t0, time.process_time() - c0, nbytes / 1e6


def scene_for(path: Path) -> Scene:
    with rasterio.open(path) as ds:
        mod = Modality("img", ds.width, ds.height, tuple(ds.transform)[:6], ds.count, ds.dtypes[0], (None,) * ds.count)
        crs = ds.crs.to_wkt()
    return Scene("bench", True, crs, (mod,), (Acquisition("2024-01-01", {"img": (str(path),)}),))


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _cpu() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def _warm_up() -> None:
    import zarr  # noqa: F401

    import core.tiling.job  # noqa: F401


def tile_once(path: Path, workers: int, tile: int, workdir: Path) -> dict[str, float]:
    """Run the tiling job on a fresh LocalCluster; returns seconds, tiles, MB and peak RSS (MiB) per worker."""
    from dask.distributed import Client, LocalCluster

    scene = scene_for(path)
    cfg = TileJobConfig(
        scene="bench",
        mode="tiles",
        tiling=TilingConfig(tile_size=tile),
        split=SplitConfig(method="spatial", block_size=tile * 16, buffer=0, fractions=(1, 0, 0)),
    )
    store = Path(tempfile.mkdtemp(dir=workdir)) / "store.zarr"
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="4GiB"
    )
    client = Client(cluster)
    client.run(_warm_up)  # a long-running cluster has these imported already; don't time first imports
    peaks: dict[str, int] = {}
    base = client.run(_rss)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for addr, rss in client.run(_rss).items():
                peaks[addr] = max(peaks.get(addr, 0), rss)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        cpu0 = client.run(_cpu)
        t0 = time.perf_counter()
        info = run_tile_job(cfg, scene, client, store)
        secs = time.perf_counter() - t0
        cpu = sum(client.run(_cpu).values()) - sum(cpu0.values())
    finally:
        stop.set()
        sampler.join()
        client.close()
        cluster.close()
        shutil.rmtree(store.parent, ignore_errors=True)
    n = sum(info.counts.values())
    mod = scene.primary
    return {
        "secs": secs,
        "cpu": cpu,
        "tiles": n,
        "mb": n * tile * tile * mod.band_count * 2 / 1e6,
        "base_mib": max(base.values()) / 2**20,
        "peak_mib": max(peaks.values()) / 2**20,
        "peaks": ", ".join(f"{v / 2**20:.0f}" for v in sorted(peaks.values())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20000, help="side of the large raster in px (default 20000)")
    ap.add_argument("--bands", type=int, default=3)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/workbench-bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"cpu cores: {os.cpu_count()}, tile {args.tile} px, {args.bands} bands uint16, workdir {args.workdir}")
    for size in (args.size // 2, args.size):
        t0 = time.perf_counter()
        path = make_geotiff(args.workdir / f"bench_{size}_{args.bands}b.tif", size, args.bands)
        print(
            f"\n== {size} x {size} px ({path.stat().st_size / 1e6:.0f} MB on disk, ready in "
            f"{time.perf_counter() - t0:.0f} s)"
        )
        for w in (int(x) for x in args.workers.split(",")):
            secs, cpu, mb = sequential_read(path)  # measured right before each run: the machine's load drifts
            limit, limit_cpu = mb / secs, mb / cpu
            print(
                f"sequential read (1 process, block by block): {mb:.0f} MB in {secs:.1f} s = {limit:.0f} MB/s "
                f"wall, {limit_cpu:.0f} MB per CPU-second"
            )
            r = tile_once(path, w, args.tile, args.workdir)
            rate, rate_cpu = r["mb"] / r["secs"], r["mb"] / r["cpu"]
            print(
                f"tiling, {w} worker(s): {r['tiles']:.0f} tiles in {r['secs']:.1f} s = {r['tiles'] / r['secs']:.1f} "
                f"tiles/s, {rate:.0f} MB/s = {rate / limit:.0%} of the sequential limit (wall); "
                f"{rate_cpu:.0f} MB per worker-CPU-second = {rate_cpu / limit_cpu:.0%} of the read's; worker RSS "
                f"idle {r['base_mib']:.0f} MiB, peak per worker [{r['peaks']}] MiB"
            )


if __name__ == "__main__":
    main()
