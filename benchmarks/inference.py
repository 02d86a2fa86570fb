"""Inference throughput against a hand-written loop, the raw read limit, 1 and 2 workers (issue 11).

Usage::

    .venv/bin/python -m benchmarks.inference [--size 8192] [--tile 256] [--overlap 32] [--workers 1,2]
        [--patch-aoi 512] [--workdir /tmp/workbench-infer-bench] [--only dense,patch,baseline,profile]

``--size 2048`` is the quick run (about 3 minutes on 2 idle cores). Generates (once, reused) a ``size`` x ``size``
10-band uint16 GeoTIFF under ``--workdir`` (never inside the repo): strzegom's 2023-03-01 Sentinel-2 image mirrored
and tiled (deflate, 512 px blocks), registered as a one-modality scene ``s2``. Bundles are built with fixed random
weights by the project's builders and saved with :func:`core.models.bundle.save_bundle` (throughput does not depend
on the weights): the U-Net (width 8, depth 4), ``patch_cnn`` and ``patch_fcn`` on 9 px patches, and a random forest
(100 trees) fitted on synthetic labels.

Printed, side by side, for every model:

* ``raw read``: one process reading the same read windows with rasterio (the I/O limit);
* ``loop``: the hand-written single-process loop with TensorFlow on 1 thread (read, normalise with the bundle's
  statistics, model call, argmax, write the core into a tiled GeoTIFF);
* ``predict, N workers``: :func:`core.inference.predict.run_predict` from a driver process of its own on a
  LocalCluster of N worker processes (1 thread each), kept for all the benchmark's runs like a long-running
  cluster (its first run, on a small AOI, loads the model: the cold time to the first pixel); no confidence
  raster. Worker RSS then includes every model loaded so far.

Columns: output Mpx/s, Mpx/s per worker, the ratio to the loop, CPU seconds of the driver process (client +
scheduler of the LocalCluster) and of the workers, driver and worker peak RSS (MiB, sampled every 0.2 s), the time
to the first finished window and the run's own ``first_pixel_s`` metric. The machine's load average is printed with
every figure: on a shared machine wall-clock figures move with it; CPU seconds move much less.

``--only profile`` breaks one worker's time per window into read, nodata mask, normalisation, model call,
argmax, write and COG conversion (measured in this process, TensorFlow on 1 thread).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for _var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = "1"  # the hand-written loop runs TensorFlow on 1 thread, like one worker

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from core.configs import AOIConfig  # noqa: E402
from core.data.scene import Acquisition, ClassInfo, Modality, Scene  # noqa: E402
from core.geo.windows import PixelWindow  # noqa: E402

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "strzegom" / "image_20230301.tif"
BLOCK = 512
CLASSES = tuple(
    ClassInfo(i, f"class{i}", f"#{(37 * i) % 256:02x}{(91 * i) % 256:02x}{(53 * i) % 256:02x}") for i in range(1, 11)
)


def load() -> str:
    """The machine's 1-minute load average as text."""
    return f"{os.getloadavg()[0]:.1f}"


def make_raster(path: Path, size: int) -> Path:
    """``size`` x ``size`` copy of strzegom 2023-03-01, mirrored and tiled (10 bands uint16, deflate, 512 px blocks)."""
    if path.exists():
        return path
    with rasterio.open(SOURCE) as src:
        img, crs, transform = src.read(), src.crs, src.transform
    n = img.shape[1]

    def mirror(i: np.ndarray) -> np.ndarray:
        p = i % (2 * n)
        return np.where(p < n, p, 2 * n - 1 - p)

    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=img.shape[0],
        dtype="uint16",
        crs=crs,
        transform=transform,
        tiled=True,
        blockxsize=BLOCK,
        blockysize=BLOCK,
        compress="deflate",
    )
    tmp = path.with_suffix(".part.tif")
    cols = mirror(np.arange(size))
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, size, BLOCK):
            rows = mirror(np.arange(r0, min(size, r0 + BLOCK)))
            dst.write(img[:, rows][:, :, cols], window=Window(0, r0, size, len(rows)))
    tmp.rename(path)
    return path


def scene_for(path: Path) -> Scene:
    """The raster as a one-modality scene ``s2`` with ten classes."""
    with rasterio.open(path) as ds:
        mod = Modality("s2", ds.width, ds.height, tuple(ds.transform)[:6], ds.count, ds.dtypes[0], (None,) * ds.count)
        crs = ds.crs.to_wkt()
    return Scene("bench", True, crs, (mod,), (Acquisition("2023-03-01", {"s2": (str(path),)}),), CLASSES, "s2")


def band_stats() -> dict[str, dict[str, list[float]]]:
    with rasterio.open(SOURCE) as src:
        x = src.read().reshape(src.count, -1).astype(np.float64)
    return {"s2": {"mean": x.mean(axis=1).tolist(), "std": x.std(axis=1).tolist()}}


def keras_bundle(workdir: Path, name: str, task: str, size: int, model: Any, params: dict[str, Any]) -> Path:
    from core.models.bundle import ModelMeta, save_bundle

    meta = ModelMeta(
        model=name,
        task=task,
        modalities=("s2",),
        sample_size={"s2": size},
        class_ids=tuple(c.id for c in CLASSES),
        class_names=tuple(c.name for c in CLASSES),
        class_colors=tuple(c.color for c in CLASSES),
        band_stats=band_stats(),
        scene="bench",
        extra={"model_params": params},
    )
    return save_bundle(workdir / f"bundle_{name}", model, meta)


def unet_bundle(workdir: Path, tile: int) -> Path:
    import keras

    from core.models.unet import build_unet

    keras.utils.set_random_seed(0)
    return keras_bundle(
        workdir, "unet", "dense", tile, build_unet((tile, tile, 10), 10, width=8, depth=4), {"width": 8, "depth": 4}
    )


def patch_bundles(workdir: Path, patch: int) -> dict[str, Path]:
    """``patch_cnn`` and ``patch_fcn`` bundles on ``patch`` px patches (fixed random weights), and the
    ``patch_fcn`` weights under an unregistered model name: predicted per patch (the task's path), not densely."""
    import keras

    from core.models.patch_cnn import build_patch_cnn
    from core.models.patch_fcn import build_patch_fcn

    out = {}
    for name, builder in (
        ("patch_cnn", build_patch_cnn),
        ("patch_fcn", build_patch_fcn),
        ("patch_fcn_per_patch", build_patch_fcn),
    ):
        keras.utils.set_random_seed(0)  # patch_fcn_per_patch: the same weights as patch_fcn
        out[name] = keras_bundle(workdir, name, "patch", patch, builder((patch, patch, 10), 10), {})
    return out


def rf_bundle(workdir: Path, path: Path) -> Path:
    """A random forest (100 trees) fitted on 20 000 pixels of the raster with labels from band quantiles."""
    from core.baselines.bundle import BaselineMeta, save_baseline_bundle
    from core.baselines.estimators import make_estimator

    with rasterio.open(path) as ds:
        x = ds.read(window=Window(0, 0, 400, 400)).reshape(ds.count, -1).T.astype(np.float32)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(x), 20_000, replace=False)
    X = x[rows]
    y = 1 + np.digitize(X[:, 3] + rng.normal(0, 50, len(X)), np.quantile(X[:, 3], np.linspace(0.1, 0.9, 9)))
    est = make_estimator("rf", 0).fit(X, y)
    meta = BaselineMeta(
        method="rf",
        features="center",
        modalities=("s2",),
        sample_size={"s2": 1},
        class_ids=tuple(c.id for c in CLASSES),
        class_names=tuple(c.name for c in CLASSES),
        class_colors=tuple(c.color for c in CLASSES),
        band_stats=band_stats(),
        scene="bench",
        store="synthetic",
    )
    return save_baseline_bundle(workdir / "bundle_rf", est, meta)


def dense_windows(size: int, tile: int, overlap: int, align: int) -> list[tuple[PixelWindow, PixelWindow]]:
    """(read window, core) pairs of the whole raster, as :func:`core.inference.predict.run_predict` cuts them."""
    from core.inference.predict import _cores, read_window_for

    core = tile - 2 * overlap - (align - 1)
    cores = _cores(PixelWindow(0, 0, size, size), core)
    return [(read_window_for(c, tile, overlap, size, size, align), c) for c in cores]


def raw_read(path: Path, reads: list[PixelWindow]) -> dict[str, float]:
    """Seconds (wall, CPU) to read ``reads`` in order from one open dataset."""
    t0, c0 = time.perf_counter(), time.process_time()
    with rasterio.open(path) as ds:
        for w in reads:
            ds.read(window=w.to_rasterio())
    return {"secs": time.perf_counter() - t0, "cpu": time.process_time() - c0, "first": float("nan")}


def hand_loop(path: Path, bundle: Path, pairs: list[tuple[PixelWindow, PixelWindow]], out: Path) -> dict[str, float]:
    """The hand-written single-process loop: read, normalise, predict_on_batch, argmax, write the core."""
    from core.models.bundle import load_bundle

    model, meta = load_bundle(bundle)
    ids = np.asarray(meta.class_ids, dtype=np.uint8)
    t0, c0, first = time.perf_counter(), time.process_time(), None
    with (
        rasterio.open(path) as src,
        rasterio.open(
            out,
            "w",
            driver="GTiff",
            width=src.width,
            height=src.height,
            count=1,
            dtype="uint8",
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            nodata=0,
            crs=src.crs,
            transform=src.transform,
        ) as dst,
    ):
        for read, core in pairs:
            x = np.moveaxis(src.read(window=read.to_rasterio()), 0, -1)
            probs = np.asarray(model.predict_on_batch(meta.normalise("s2", x)[None]))[0]
            r, c = core.row_off - read.row_off, core.col_off - read.col_off
            classes = ids[probs[r : r + core.height, c : c + core.width].argmax(-1)]
            dst.write(classes, 1, window=core.to_rasterio())
            first = first or time.perf_counter() - t0
    return {"secs": time.perf_counter() - t0, "cpu": time.process_time() - c0, "first": first}


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _cpu() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


@contextmanager
def peak_rss(client: Any) -> Iterator[dict[str, int]]:
    """Samples the driver's and every worker's RSS every 0.2 s while the block runs: ``{"driver", "workers"}``.

    Workers are sampled by process id from here (psutil), not through ``client.run``: an RPC to every worker five
    times a second would cost the driver and the workers CPU that the figures then charge to inference.
    """
    import psutil

    procs = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    peaks = {"driver": _rss(), "workers": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peaks["driver"] = max(peaks["driver"], _rss())
            peaks["workers"] = max([peaks["workers"], *(p.memory_info().rss for p in procs)])
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()


_CHILDREN: dict[int, subprocess.Popen[str]] = {}


def workbench(scene_path: Path, bundle: Path, workers: int, out: Path, aoi: AOIConfig, **kw: Any) -> dict[str, float]:
    """One run_predict in the benchmark's driver process for ``workers`` workers (:func:`serve`).

    One driver process (a fresh Python: its RSS is the driver's alone) and one LocalCluster per worker count,
    kept for every run of the benchmark, as a long-running cluster is: its first run finds cold workers (model
    load, first trace; reported as ``cold_first_pixel_s``), later runs warm ones.
    """
    child = _CHILDREN.get(workers)
    if child is None:
        err = open(out.parent / f"driver_{workers}.log", "w")  # noqa: SIM115 - lives as long as the child
        child = _CHILDREN[workers] = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.inference", "--child", str(workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert child.stdin is not None and child.stdout is not None
    spec = {"scene": str(scene_path), "bundle": str(bundle), "out": str(out), "aoi": aoi.model_dump(), "kw": kw}
    child.stdin.write(json.dumps(spec) + "\n")
    child.stdin.flush()
    for line in child.stdout:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"benchmark driver for {workers} workers died; see {out.parent / f'driver_{workers}.log'}")


def close_children() -> None:
    for child in _CHILDREN.values():
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=120)
    _CHILDREN.clear()


def serve(workers: int) -> None:
    """The driver process: a LocalCluster of ``workers`` processes; one run per JSON spec line on stdin."""
    from dask.distributed import Client

    from core.distributed.cluster import local_cluster

    with local_cluster(workers, 1, dashboard_address=":0", memory_limit="4GiB") as cluster, Client(cluster) as client:
        cold: float | None = None
        for line in sys.stdin:
            spec = json.loads(line)
            if cold is None:  # a first small run: cold workers; the measured runs find them warm
                cold = measured_run(client, spec, small=True)["first_pixel_s"]
            print("RESULT " + json.dumps({**measured_run(client, spec), "cold_first_pixel_s": cold}), flush=True)


def measured_run(client: Any, spec: dict[str, Any], small: bool = False) -> dict[str, Any]:
    """run_predict of ``spec``: wall and CPU seconds, peak RSS, first window (``small``: a 256 px AOI, unsampled)."""
    from core.inference.predict import run_predict

    scene, aoi = scene_for(Path(spec["scene"])), AOIConfig(**spec["aoi"])
    if small:
        ring = [(0, 0), (256, 0), (256, 256), (0, 256), (0, 0)]
        aoi = AOIConfig(geometry={"type": "Polygon", "coordinates": [ring]}, crs="pixel")
    done: list[float] = []
    cpu0, dcpu0 = client.run(_cpu), _cpu()
    with peak_rss(client) as peaks:
        t0 = time.perf_counter()
        res = run_predict(
            spec["bundle"],
            scene,
            aoi,
            client,
            Path(spec["out"]).with_suffix(".small.tif") if small else spec["out"],
            confidence=False,
            progress=lambda d, t: done.append(time.perf_counter() - t0) if not done else None,
            **spec["kw"],
        )
        secs = time.perf_counter() - t0
    cpu = sum(client.run(_cpu).values()) - sum(cpu0.values())
    return {
        "secs": secs,
        "cpu": cpu,
        "driver_cpu": _cpu() - dcpu0,
        "first": done[0] if done else float("nan"),
        "first_pixel_s": res["first_pixel_s"],
        "cog_s": res["cog_s"],
        "tasks": res["tasks"],
        "driver_mib": peaks["driver"] / 2**20,
        "worker_mib": peaks["workers"] / 2**20,
        "windows": res["windows"],
        "tile": res["tile_size"],
        "overlap": res["overlap"],
    }


def patch_loop(path: Path, bundle: Path, aoi: PixelWindow, block: int, out: Path, batch: int = 256) -> dict[str, float]:
    """Hand-written per-pixel loop: per ``block`` core, one read, one patch per pixel, ``batch`` patches a call."""
    from core.baselines.bundle import is_baseline_bundle, load_baseline_bundle
    from core.models.bundle import load_bundle

    baseline = is_baseline_bundle(bundle)
    model, meta = load_baseline_bundle(bundle) if baseline else load_bundle(bundle)
    p = int(meta.sample_size["s2"])
    t0, c0, first = time.perf_counter(), time.process_time(), None
    with (
        rasterio.open(path) as src,
        rasterio.open(
            out,
            "w",
            driver="GTiff",
            width=aoi.width,
            height=aoi.height,
            count=1,
            dtype="uint8",
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
            nodata=0,
        ) as dst,
    ):
        for r in range(aoi.row_off, aoi.row_end, block):
            for c in range(aoi.col_off, aoi.col_end, block):
                h, w = min(block, aoi.row_end - r), min(block, aoi.col_end - c)
                win = Window(c - p // 2, r - p // 2, w + p - 1, h + p - 1)
                x = np.moveaxis(src.read(window=win, boundless=True), 0, -1).astype(np.float32)
                x = x if baseline else meta.normalise("s2", x)
                view = np.lib.stride_tricks.sliding_window_view(x, (p, p), axis=(0, 1))  # (h, w, C, p, p)
                flat = view.reshape(h * w, *view.shape[2:])
                ids = np.empty(h * w, np.uint8)
                for i in range(0, h * w, batch):
                    chunk = flat[i : i + batch].transpose(0, 2, 3, 1)
                    if baseline:
                        ids[i : i + batch] = model.predict(chunk.reshape(len(chunk), -1))
                    else:
                        k = np.asarray(model.predict_on_batch(chunk)).argmax(-1)
                        ids[i : i + batch] = np.asarray(meta.class_ids, np.uint8)[k]
                dst.write(ids.reshape(h, w), 1, window=Window(c - aoi.col_off, r - aoi.row_off, w, h))
                first = first or time.perf_counter() - t0
    return {"secs": time.perf_counter() - t0, "cpu": time.process_time() - c0, "first": first}


HEADER = (
    f"{'':34} {'Mpx/s':>7} {'/worker':>7} {'xloop':>6} {'drvCPU':>7} {'wrkCPU':>7} {'Mpx/CPUs':>8} "
    f"{'xloopCPU':>8} {'drvMiB':>7} {'wrkMiB':>7} {'first_s':>7} {'1stpx_s':>7} {'load':>5}"
)
"""Columns: output Mpx per wall second, per worker, per worker / loop; CPU seconds of the driver and of all
workers; output Mpx per CPU-second (driver + workers) and that / the loop's; peak RSS MiB of the driver and of the
largest worker; seconds to the first written window; the run's ``first_pixel_s``; the 1-minute load average."""


def row(
    name: str, r: dict[str, float], mpx: float, workers: int, loop: tuple[float, float] | None
) -> tuple[float, float]:
    """Print one table row; returns (Mpx/s per worker, Mpx per CPU-second)."""
    rate = mpx / r["secs"]
    per = rate / max(1, workers)
    cpu = r["cpu"] + r.get("driver_cpu", 0.0)
    print(
        f"{name:34} {rate:7.3f} {per:7.3f} {(per / loop[0] if loop else float('nan')):6.2f} "
        f"{r.get('driver_cpu', float('nan')):7.1f} {r['cpu']:7.1f} {mpx / cpu:8.3f} "
        f"{(mpx / cpu / loop[1] if loop else float('nan')):8.2f} "
        f"{r.get('driver_mib', float('nan')):7.0f} {r.get('worker_mib', float('nan')):7.0f} "
        f"{r['first']:7.2f} {r.get('first_pixel_s', float('nan')):7.2f} {load():>5}",
        flush=True,
    )
    return per, mpx / cpu


def _fresh_read(path: Path, window: PixelWindow) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(window=window.to_rasterio())


def profile(path: Path, bundle: Path, pairs: list[tuple[PixelWindow, PixelWindow]], out: Path) -> None:
    """Per-stage CPU milliseconds per window of the loop (process CPU time: robust to the machine's load)."""
    from core.data import cog
    from core.inference.runner import ModelRunner
    from core.models.bundle import load_bundle

    model, meta = load_bundle(bundle)
    tile = pairs[0][0].height
    runner = ModelRunner(model, meta)
    stages: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        t = time.process_time()
        value = fn(*args)
        stages[name] = stages.get(name, 0.0) + time.process_time() - t
        return value

    ids = np.asarray(meta.class_ids, np.uint8)
    tmp = out.with_suffix(".tmp.tif")
    with (
        rasterio.open(path) as src,
        cog.open_tiled(tmp, **cog.tiled_profile(src.width, src.height, src.transform, src.crs, compress=None)) as dst,
    ):
        for read, core in pairs:
            timed("read, file opened per window", _fresh_read, path, read)
            raw = timed("read, file kept open", src.read, None, None, read.to_rasterio())
            x = np.moveaxis(raw, 0, -1)
            timed("nodata mask", np.any, x == 0, -1)
            xn = timed("normalise (float32)", meta.normalise, "s2", x)[None]
            probs = timed("model: predict_on_batch", model.predict_on_batch, xn)[0]
            timed("model: compiled tf.function", runner.probabilities, [xn])
            r, c = core.row_off - read.row_off, core.col_off - read.col_off
            crop = np.asarray(probs)[r : r + core.height, c : c + core.width]
            classes = timed("argmax of the core + class ids", lambda p: ids[p.argmax(-1)], crop)
            timed("write core (uncompressed tmp)", dst.write, classes, 1, core.to_rasterio())
    timed("COG conversion (whole map)", lambda: cog.finalize_cog(tmp, out, min_overview_size=128))
    n = len(pairs)
    print(f"\nprofile: CPU ms per window over {n} windows (tile {tile}), load {load()}")
    for name, secs in stages.items():
        per = secs * 1e3 / (1 if name.startswith("COG") else n)
        print(f"  {name:32} {per:8.2f}" + ("  (total, once per map)" if name.startswith("COG") else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8192, help="raster side in px (default 8192; 2048 = quick run)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--patch", type=int, default=9, help="patch side of the patch models (px)")
    ap.add_argument(
        "--patch-aoi",
        type=int,
        default=256,
        help="side of the AOI the per-patch models and the RF map (px; they are slow)",
    )
    ap.add_argument(
        "--dense-patch-aoi",
        type=int,
        default=None,
        help="side of the AOI the densely evaluated patch_fcn maps (px; default: the whole raster)",
    )
    ap.add_argument("--only", default="dense,seams,patch,baseline", help="sections: dense,seams,patch,baseline,profile")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/workbench-infer-bench"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        serve(int(args.child))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    sections = set(args.only.split(","))
    t0 = time.perf_counter()
    path = make_raster(args.workdir / f"strzegom_mirrored_{args.size}.tif", args.size)
    print(
        f"raster {path} ({args.size} x {args.size} x 10 uint16, {path.stat().st_size / 1e6:.0f} MB, ready in "
        f"{time.perf_counter() - t0:.0f} s); cpu cores {os.cpu_count()}; tile {args.tile}, overlap "
        f"{args.overlap}; load {load()}",
        flush=True,
    )
    scene, workers = scene_for(path), [int(w) for w in args.workers.split(",")]
    if "profile" in sections:
        bundle = unet_bundle(args.workdir, args.tile)
        profile(path, bundle, dense_windows(args.size, args.tile, args.overlap, 16), args.workdir / "profile.tif")
    try:
        if "dense" in sections:
            dense_section(args, path, scene, workers)
        if "seams" in sections:
            seams_section(args, path, scene, workers[-1])
        if "patch" in sections or "baseline" in sections:
            per_pixel_sections(args, path, scene, workers, sections)
    finally:
        close_children()


def dense_section(args: argparse.Namespace, path: Path, scene: Scene, workers: list[int]) -> None:
    bundle = unet_bundle(args.workdir, args.tile)
    pairs = dense_windows(args.size, args.tile, args.overlap, 16)
    mpx = args.size**2 / 1e6
    print(f"\n== U-Net (width 8, depth 4): {len(pairs)} windows, {mpx:.1f} Mpx\n{HEADER}")
    row("raw read (same windows)", raw_read(path, [r for r, _ in pairs]), mpx, 1, None)
    loop = row("hand-written loop (1 process)", hand_loop(path, bundle, pairs, args.workdir / "loop.tif"), mpx, 1, None)
    row(
        "worker task in process (chunks)",
        chunk_in_process(path, scene, bundle, pairs, args.tile, pairs[0][1].height),
        mpx,
        1,
        loop,
    )
    per = {}
    for w in workers:
        r = workbench(
            path,
            bundle,
            w,
            args.workdir / f"predict_{w}.tif",
            AOIConfig(),
            tile_size=args.tile,
            overlap=args.overlap,
            seams="crop",
        )
        per[w] = row(f"predict, {w} worker(s)", r, mpx, w, loop)
        print(
            f"   {r['windows']} windows in {r['tasks']} tasks; COG conversion {r['cog_s']:.2f} s; first pixel "
            f"{r['first_pixel_s']:.2f} s (warm workers), {r['cold_first_pixel_s']:.2f} s in the cluster's first run "
            "(cold: model load and first trace)"
        )
    if len(workers) > 1:
        speedup = per[workers[-1]][0] * workers[-1] / (per[workers[0]][0] * workers[0])
        print(f"{workers[-1]} workers / {workers[0]}: {speedup:.2f}x (wall clock)")


def seams_section(args: argparse.Namespace, path: Path, scene: Scene, workers: int) -> None:
    from core.inference.predict import model_context
    from core.models.bundle import load_meta

    bundle = unet_bundle(args.workdir, args.tile)
    radius = model_context(load_meta(bundle)).radius
    mpx = args.size**2 / 1e6
    print(
        f"\n== seams: exact (overlap = receptive-field radius {radius}) vs overlap {args.overlap}, {workers} "
        f"worker(s)\n{HEADER}"
    )
    for name, kw in (
        (
            f"crop, tile {args.tile}, overlap {args.overlap}",
            dict(tile_size=args.tile, overlap=args.overlap, seams="crop"),
        ),
        ("exact, default tile", dict(seams="exact")),
    ):
        r = workbench(path, bundle, workers, args.workdir / "seams.tif", AOIConfig(), **kw)
        row(name, r, mpx, workers, None)
        print(f"   windows {r['windows']}")


def _aoi(size: int, side: int) -> tuple[PixelWindow, AOIConfig]:
    off = (size - side) // 2
    win = PixelWindow(off, off, side, side)
    ring = [(off, off), (off + side, off), (off + side, off + side), (off, off + side), (off, off)]
    return win, AOIConfig(geometry={"type": "Polygon", "coordinates": [ring]}, crs="pixel")


def per_pixel_sections(
    args: argparse.Namespace, path: Path, scene: Scene, workers: list[int], sections: set[str]
) -> None:
    """The RF baseline and the patch models per patch on a central AOI of ``--patch-aoi`` px, the dense patch_fcn
    on ``--dense-patch-aoi`` px (the whole raster by default)."""
    win, aoi = _aoi(args.size, min(args.patch_aoi, args.size))
    mpx = win.width * win.height / 1e6
    bundles: dict[str, Path] = {}
    if "patch" in sections:
        b = patch_bundles(args.workdir, args.patch)
        bundles = {
            f"patch_cnn {args.patch} px, per patch": b["patch_cnn"],
            f"patch_fcn {args.patch} px, per patch (same weights)": b["patch_fcn_per_patch"],
            f"patch_fcn {args.patch} px, dense": b["patch_fcn"],
        }
    if "baseline" in sections:
        bundles = {"rf (100 trees), per pixel": rf_bundle(args.workdir, path), **bundles}
    loop, per_patch = None, {}
    for name, bundle in bundles.items():
        if name.endswith("dense"):
            win, aoi = _aoi(args.size, min(args.dense_patch_aoi or args.size, args.size))
            mpx = win.width * win.height / 1e6
        print(f"\n== {name}: AOI {win.width} x {win.height} px ({mpx:.2f} Mpx)\n{HEADER}")
        if not name.endswith("dense"):
            row("raw read (64 px blocks)", raw_read(path, _blocks(win, 64)), mpx, 1, None)
            loop = row(
                "hand-written loop (1 process)",
                patch_loop(path, bundle, win, 64, args.workdir / "pl.tif"),
                mpx,
                1,
                None,
            )
        for w in workers:
            r = workbench(path, bundle, w, args.workdir / f"pp_{w}.tif", aoi)
            got = row(f"predict, {w} worker(s)", r, mpx, w, loop)
            if "per patch (same weights)" in name:
                per_patch[w] = got
            elif name.endswith("dense") and w in per_patch:
                print(
                    f"   dense / per-patch path, {w} worker(s), same weights: {got[0] / per_patch[w][0]:.0f}x wall "
                    f"clock, {got[1] / per_patch[w][1]:.0f}x per CPU-second"
                )


def _blocks(win: PixelWindow, block: int) -> list[PixelWindow]:
    return [
        PixelWindow(r, c, min(block, win.row_end - r), min(block, win.col_end - c))
        for r in range(win.row_off, win.row_end, block)
        for c in range(win.col_off, win.col_end, block)
    ]


def chunk_in_process(
    path: Path, scene: Scene, bundle: Path, pairs: list[tuple[PixelWindow, PixelWindow]], tile: int, core: int
) -> dict[str, float]:
    """The worker task run in this process over every chunk (no Dask): what a worker costs without the driver."""
    from core.inference.plan import group_pairs, tiles_per_side
    from core.inference.windows import predict_dense_chunk

    chunks = group_pairs(pairs, (0, 0), core, tiles_per_side(tile, core))
    predict_dense_chunk(str(bundle), scene, None, chunks[0])  # load and trace, as a warm worker has
    t0, c0 = time.perf_counter(), time.process_time()
    for chunk in chunks:
        predict_dense_chunk(str(bundle), scene, None, chunk)
    return {"secs": time.perf_counter() - t0, "cpu": time.process_time() - c0, "first": float("nan")}


if __name__ == "__main__":
    main()
