"""Vectorisation time and peak memory on a large class map (issue 14).

Generates a ``--size`` x ``--size`` uint8 class-map COG (default 8192 x 8192, 10 m pixels in EPSG:32633) with
realistic blobs: a smooth low-resolution random field per class, bilinearly upsampled, plus mid-scale noise for
ragged boundaries and ``--speckle`` salt-and-pepper pixels (what an unsmoothed per-pixel prediction looks like),
and a matching confidence COG. Both are written window by window into a temporary folder that is removed at the
end (never committed). Then :func:`core.export.vectorize.vectorize` runs in a *child process* so its peak RSS
(the child's ``VmHWM``) is the vectoriser's own, not the generator's.

Usage: ``python -m benchmarks.vectorize [--size 8192] [--window 1024] [--mmu-ha 0.5] [--simplify 0]``

Measured (2-core shared machine, load average ~12, 8192 x 8192, 10 m, 6 classes, 1 % speckle, mmu 0.5 ha = 50 px,
1024 px windows, GPKG + GeoJSON + mean confidence): 16 847 polygons; 67 s wall and 229 MiB peak RSS without
simplification (19.5 s and 211 MiB for the GPKG alone on a quieter machine); with ``--simplify 10`` 89 s and
612 MiB, because coverage simplification needs the whole coverage (the polygons, not the pixels) at once.

Issue 20 (the minimum mapping unit as region merging, :mod:`core.export.mmu`, instead of one GDAL sieve pass), the
same machine under load 9-28 (so CPU seconds, not wall), GPKG + GeoJSON + mean confidence, 1024 px windows, mmu
0.5 ha (50 px), two runs each (``under_mmu``: polygons with fewer pixels than the MMU):

- ``--size 4096`` (1 % speckle): sieve 4,342 polygons, 0 under the MMU, 7.8 / 9.0 s CPU, 196 / 194 MiB; merging
  4,340 polygons, 0 under, 10.0 / 10.0 s CPU, 209 / 217 MiB.
- ``--size 2048 --speckle 0.3`` (a noisy per-pixel map): sieve 1,062 polygons, 74 under the MMU, 2.5 / 2.4 s CPU,
  188 / 187 MiB; merging 986 polygons, 0 under, 4.6 / 4.2 s CPU, 476 / 431 MiB (914,313 regions and 1.4 M region
  borders in the graph; narrower integer types between the two runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from scipy import ndimage

log = logging.getLogger("benchmarks.vectorize")

CLASSES = [
    {"id": i + 1, "name": n, "color": c}
    for i, (n, c) in enumerate(
        [
            ("forest", "#1a9641"),
            ("crops", "#ffff00"),
            ("grassland", "#a6d96a"),
            ("urban", "#d7191c"),
            ("water", "#2b83ba"),
            ("bare soil", "#b15928"),
        ]
    )
]


def _fields(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = len(CLASSES)
    coarse = ndimage.gaussian_filter(rng.normal(size=(size // 32, size // 32, k)), sigma=(2.5, 2.5, 0))
    mid = ndimage.gaussian_filter(rng.normal(size=(size // 8, size // 8, k)), sigma=(1, 1, 0))
    return coarse / coarse.std(), mid / mid.std()


def _sample(field: np.ndarray, rows: np.ndarray, cols: np.ndarray, scale: int) -> np.ndarray:
    rr, cc = np.meshgrid(rows / scale, cols / scale, indexing="ij")
    return np.stack(
        [ndimage.map_coordinates(field[..., j], [rr, cc], order=1, mode="nearest") for j in range(field.shape[-1])],
        axis=-1,
    )


def generate(folder: Path, size: int, speckle: float, seed: int = 0) -> tuple[Path, Path]:
    """Write ``map.tif`` and ``map_confidence.tif`` (COGs) into ``folder``, 1024 rows at a time."""
    from core.data import cog

    rng = np.random.default_rng(seed)
    coarse, mid = _fields(size, rng)
    transform = Affine(10, 0, 500000, 0, -10, 5700000)
    paths = [folder / "map.tmp.tif", folder / "map_confidence.tmp.tif"]
    dst_c = cog.open_tiled(paths[0], **cog.tiled_profile(size, size, transform, "EPSG:32633", nodata=0, blocksize=512))
    dst_p = cog.open_tiled(
        paths[1], **cog.tiled_profile(size, size, transform, "EPSG:32633", nodata=255, blocksize=512)
    )
    cog.write_class_metadata(
        dst_c, [c["id"] for c in CLASSES], [c["name"] for c in CLASSES], [c["color"] for c in CLASSES]
    )
    from rasterio.windows import Window

    cols = np.arange(size)
    for r in range(0, size, 512):
        rows = np.arange(r, min(size, r + 512))
        score = _sample(coarse, rows, cols, 32) + 0.35 * _sample(mid, rows, cols, 8)
        classes = (np.argmax(score, axis=-1) + 1).astype(np.uint8)
        noisy = rng.random(classes.shape) < speckle
        classes[noisy] = rng.integers(1, len(CLASSES) + 1, int(noisy.sum()))
        classes[:, :100] = 0  # an AOI edge
        top2 = np.sort(score, axis=-1)[..., -2:]
        conf = np.clip(np.rint(50 + 40 * np.tanh(top2[..., 1] - top2[..., 0])), 0, 100).astype(np.uint8)
        conf[classes == 0] = 255
        win = Window(0, r, size, len(rows))
        dst_c.write(classes[None], window=win)
        dst_p.write(conf[None], window=win)
    dst_c.close()
    dst_p.close()
    from rasterio.enums import Resampling

    return (
        cog.finalize_cog(paths[0], folder / "map.tif"),
        cog.finalize_cog(paths[1], folder / "map_confidence.tif", resampling=Resampling.average),
    )


def _child(args: dict[str, Any], queue: Any) -> None:
    from core.export.vectorize import vectorize

    t0, c0 = time.perf_counter(), time.process_time()
    res = vectorize(
        args["map"],
        args["gpkg"],
        args["geojson"],
        confidence=args["conf"],
        min_mapping_unit=args["mmu_ha"],
        mmu_unit="ha",
        simplify=args["simplify"],
        window=args["window"],
    )
    queue.put(
        {
            "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1),
            "polygons": res.polygons,
            "windows": res.windows,
            "mmu_pixels": res.mmu_pixels,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }
    )


def _under_mmu(gpkg: str, mmu_pixels: int) -> int:
    """Polygons of the GeoPackage with fewer pixels than the minimum mapping unit (read after the timed child)."""
    import fiona

    with fiona.open(gpkg) as src:
        return sum(1 for f in src if f.properties["pixels"] < mmu_pixels)


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB: ``VmHWM`` (per address space, so not inherited from the parent
    the way ``ru_maxrss`` is carried over fork + exec on Linux), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(size: int, window: int, mmu_ha: float, simplify: float, speckle: float, geojson: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="vectorize_bench_"))
    try:
        t0 = time.perf_counter()
        class_map, conf = generate(folder, size, speckle)
        gen_s = time.perf_counter() - t0
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        args = {
            "map": str(class_map),
            "conf": str(conf),
            "gpkg": str(folder / "map.gpkg"),
            "geojson": str(folder / "map.geojson") if geojson else None,
            "mmu_ha": mmu_ha,
            "simplify": simplify,
            "window": window,
        }
        proc = ctx.Process(target=_child, args=(args, queue))
        proc.start()
        out = queue.get()
        proc.join()
        out.update(
            under_mmu=_under_mmu(args["gpkg"], out["mmu_pixels"]),
            size=size,
            window=window,
            mmu_ha=mmu_ha,
            simplify=simplify,
            speckle=speckle,
            generate_seconds=round(gen_s, 1),
            map_mib=round(class_map.stat().st_size / 2**20, 1),
            gpkg_mib=round((folder / "map.gpkg").stat().st_size / 2**20, 1),
        )
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192)
    p.add_argument("--window", type=int, default=1024)
    p.add_argument("--mmu-ha", type=float, default=0.5)
    p.add_argument("--simplify", type=float, default=0.0, help="tolerance in metres (0: none)")
    p.add_argument("--speckle", type=float, default=0.01)
    p.add_argument("--no-geojson", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = run(a.size, a.window, a.mmu_ha, a.simplify, a.speckle, not a.no_geojson)
    log.info("%s", json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
