"""Whole predict jobs as a user runs them, beside the hand-written loop, and where each job's time goes (issue 20).

``python -m benchmarks.inference --only jobs`` (see :mod:`benchmarks.inference` for the raster and the U-Net
bundle). Every figure is a process measured from the outside, start to exit, on the same raster:

* ``hand loop``: a fresh Python that imports TensorFlow, loads the bundle and runs the hand-written loop of
  :func:`benchmarks.inference.hand_loop` (TensorFlow on 1 thread); ``2 hand loops``: two of them at once, each
  on one half of the raster's rows (what the machine itself gives two processes);
* ``cold job``: ``python -m jobs run predict.json`` starting its own local cluster of 1 worker (the CLI's
  default);
* ``warm job``: the same job against a cluster already running (``jobs cluster start``, the app's case) of 1 or
  2 workers, after one earlier job on it.

A job and its reference run back to back, in alternating order, ``--repeats`` times; the table gives each pair's
ratio. Phases of a job come from the timestamps of its own log lines (cluster up, pre-flight, first and last
window, COGs written, run recorded) and of the process: driver start and imports, cluster start or connection,
pre-flight, run start to first window (plan, worker imports not yet done, model load, first trace), windows,
COG conversion, outputs (areas, styles, STAC), cluster close and exit. The hand loop reports its own: imports,
model load, first window (trace), the other windows.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
MARKS = (
    ("cluster", re.compile(r"started local Dask cluster|connected to Dask scheduler")),
    ("preflight", re.compile(r"cluster pre-flight on")),
    ("first window", re.compile(r"inference: \d+/\d+")),
    ("cog", re.compile(r"wrote COG .*prediction_confidence\.tif|wrote COG .*prediction\.tif")),
    ("recorded", re.compile(r"\(predict\) succeeded")),
)
PHASES = (
    ("driver start, imports, cluster", "start", "cluster"),
    ("cluster pre-flight", "cluster", "preflight"),
    ("run row to first window", "preflight", "first window"),
    ("windows", "first window", "last window"),
    ("COG conversion", "last window", "cog"),
    ("outputs (areas, styles, STAC)", "cog", "recorded"),
    ("cluster close, exit", "recorded", "end"),
)


def _env(home: Path, scheduler: str | None = None) -> dict[str, str]:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_DB_URL": f"sqlite:///{home / 'workbench.db'}"}
    env.pop("WORKBENCH_SCHEDULER", None)
    env.pop("TF_NUM_INTRAOP_THREADS", None)  # the job's workers set their own caps
    env.pop("OMP_NUM_THREADS", None)
    if scheduler:
        env["WORKBENCH_SCHEDULER"] = scheduler
    return env


def _cli(home: Path, *args: str, scheduler: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args], env=_env(home, scheduler), capture_output=True, text=True, check=False
    )


def setup(workdir: Path, raster: Path) -> Path:
    """A fresh workbench home with the raster registered as scene ``bench`` (modality ``s2``)."""
    home = workdir / "jobs-home"
    subprocess.run(["rm", "-rf", str(home)], check=True)
    home.mkdir(parents=True)
    done = _cli(home, "scenes", "register", "--name", "bench", "--modality", "s2", "--image", str(raster))
    if done.returncode:
        raise RuntimeError(f"could not register {raster}: {done.stderr[-2000:]}")
    return home


def _marks(log: str, t0: float, t_end: float) -> dict[str, float]:
    """Seconds from the process start of each phase boundary found in the job's log."""
    marks = {"start": 0.0, "end": t_end - t0}
    for line in log.splitlines():
        m = STAMP.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - t0
        for name, pattern in MARKS:
            if pattern.search(line):
                if name == "first window":
                    marks.setdefault(name, t)
                    marks["last window"] = t
                else:
                    marks[name] = t
    return marks


def run_job(home: Path, config: dict[str, Any], scheduler: str | None = None) -> dict[str, Any]:
    """One ``python -m jobs run`` of ``config``: wall seconds and its phases (seconds each)."""
    path = home / "predict.json"
    path.write_text(json.dumps(config))
    t0 = time.time()
    done = _cli(home, "run", str(path), scheduler=scheduler)
    t_end = time.time()
    if done.returncode:
        raise RuntimeError(f"predict job failed: {done.stdout[-1000:]}{done.stderr[-3000:]}")
    marks = _marks(done.stderr, t0, t_end)
    phases = {name: marks[b] - marks[a] for name, a, b in PHASES if a in marks and b in marks}
    return {"secs": t_end - t0, "phases": phases}


def _loop_cmd(bundle: Path, raster: Path, out: Path, rows: tuple[int, int], tile: int, overlap: int) -> list[str]:
    return [sys.executable, "-m", "benchmarks.inference_jobs", "--loop", json.dumps(
        {"bundle": str(bundle), "raster": str(raster), "out": str(out), "rows": rows, "tile": tile, "overlap": overlap}
    )]  # fmt: skip


def run_loops(bundle: Path, raster: Path, out: Path, size: int, tile: int, overlap: int, n: int) -> dict[str, Any]:
    """``n`` hand loops at once, each on ``1 / n`` of the raster's rows: wall seconds until all exited."""
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    bounds = [round(i * size / n) for i in range(n + 1)]
    t0 = time.time()
    procs = [
        subprocess.Popen(
            _loop_cmd(bundle, raster, out.with_suffix(f".{i}.tif"), (bounds[i], bounds[i + 1]), tile, overlap),
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    reports = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    secs = time.time() - t0
    if any(p.returncode for p in procs):
        raise RuntimeError("a hand loop failed")
    phases = {k: max(r[k] for r in reports) for k in reports[0]}
    return {"secs": secs, "phases": phases}


def loop_main(spec: dict[str, Any]) -> None:
    """The hand-written loop as its own process (TensorFlow imported here): prints its phases as JSON."""
    t0 = time.perf_counter()
    import keras  # noqa: F401 - the import a hand-written script pays

    from benchmarks.inference import dense_windows
    from core.models.bundle import load_bundle

    t_imports = time.perf_counter()
    import rasterio

    with rasterio.open(spec["raster"]) as ds:
        size = ds.width
    r0, r1 = spec["rows"]
    pairs = [p for p in dense_windows(size, spec["tile"], spec["overlap"], 16) if r0 <= p[1].row_off < r1]
    model, meta = load_bundle(spec["bundle"])
    t_load = time.perf_counter()
    first = hand_loop_pairs(Path(spec["raster"]), model, meta, pairs, Path(spec["out"]))
    t_end = time.perf_counter()
    print(json.dumps({"imports": t_imports - t0, "model load": t_load - t_imports, "first window": first,
                      "other windows": t_end - t_load - first}))  # fmt: skip


def hand_loop_pairs(path: Path, model: Any, meta: Any, pairs: list[Any], out: Path) -> float:
    """:func:`benchmarks.inference.hand_loop`'s body over ``pairs`` with a loaded model; seconds to the first window."""
    import numpy as np
    import rasterio

    ids = np.asarray(meta.class_ids, dtype=np.uint8)
    t0, first = time.perf_counter(), 0.0
    with rasterio.open(path) as src:
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8", tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", nodata=0, crs=src.crs,
                       transform=src.transform)  # fmt: skip
        with rasterio.open(out, "w", **profile) as dst:
            for read, core in pairs:
                x = np.moveaxis(src.read(window=read.to_rasterio()), 0, -1)
                probs = np.asarray(model.predict_on_batch(meta.normalise("s2", x)[None]))[0]
                r, c = core.row_off - read.row_off, core.col_off - read.col_off
                dst.write(ids[probs[r : r + core.height, c : c + core.width].argmax(-1)], 1, window=core.to_rasterio())
                first = first or time.perf_counter() - t0
    return first


def _row(name: str, r: dict[str, Any], mpx: float, ref: dict[str, Any] | None, target: float | None) -> None:
    rate = mpx / r["secs"]
    ratio = f"{rate / (mpx / ref['secs']):6.2f}x" if ref else " " * 7
    goal = f"  (target >= {target:.2f}x)" if target else ""
    print(f"  {name:38} {r['secs']:7.1f} s {rate:6.3f} Mpx/s {ratio}{goal}  load {os.getloadavg()[0]:.1f}", flush=True)
    for phase, secs in r["phases"].items():
        print(f"      {phase:34} {secs:6.2f} s")


def _start_cluster(home: Path, workers: int) -> str:
    done = _cli(home, "cluster", "start", "--workers", str(workers))
    if done.returncode:
        raise RuntimeError(f"cluster start failed: {done.stderr[-2000:]}")
    return str(json.loads((home / "cluster.json").read_text())["scheduler"])


def jobs_section(workdir: Path, raster: Path, bundle: Path, size: int, tile: int, overlap: int, repeats: int) -> None:
    """Cold and warm jobs of 1 and 2 workers beside their references (see the module docstring)."""
    home = setup(workdir, raster)
    mpx = size * size / 1e6
    config = {"kind": "predict", "model": str(bundle), "scene": "bench", "tile_size": tile, "overlap": overlap,
              "seams": "crop"}  # fmt: skip
    loop = lambda n: run_loops(bundle, raster, workdir / "loop.tif", size, tile, overlap, n)  # noqa: E731
    print(f"\n== whole jobs: {size} x {size} px ({mpx:.1f} Mpx), U-Net width 8, tile {tile}, overlap {overlap} "
          f"(seams crop), confidence COG on (the default); {repeats} repeats, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    cold = lambda: run_job(home, {**config, "cluster": {"n_workers": 1}})  # noqa: E731
    _pairs_run([("cold job, own cluster of 1 worker", cold, loop, 1, 0.85)], mpx, repeats)
    for workers, target in ((1, 0.95), (2, 0.95)):
        subprocess.run([sys.executable, "-m", "jobs", "cluster", "stop"], env=_env(home), capture_output=True)
        scheduler = _start_cluster(home, workers)
        run_job(home, config, scheduler)  # the cluster's first job: workers load the model
        job = (lambda s: lambda: run_job(home, config, s))(scheduler)
        name = f"warm job, running cluster of {workers} worker(s)"
        _pairs_run([(name, job, loop, workers, target)], mpx, repeats)
    subprocess.run([sys.executable, "-m", "jobs", "cluster", "stop"], env=_env(home), capture_output=True)


def _pairs_run(pairs: list[tuple[str, Any, Any, int, float]], mpx: float, repeats: int) -> None:
    for name, job, loop, n, target in pairs:
        ref_name = "hand loop (1 process)" if n == 1 else f"{n} hand loops at once, 1/{n} of the rows each"
        ratios = []
        for rep in range(repeats):
            ref = functools.partial(loop, n)
            order = (("job", job), ("ref", ref)) if rep % 2 == 0 else (("ref", ref), ("job", job))
            got = {k: fn() for k, fn in order}
            print(f"\n  {name}, repeat {rep + 1} ({' then '.join(k for k, _ in order)})")
            _row(ref_name, got["ref"], mpx, None, None)
            _row(name, got["job"], mpx, got["ref"], target)
            ratios.append(got["ref"]["secs"] / got["job"]["secs"])
        print(f"  {name}: job / reference throughput {', '.join(f'{r:.2f}' for r in ratios)} (target >= {target})")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--loop":
    loop_main(json.loads(sys.argv[2]))
