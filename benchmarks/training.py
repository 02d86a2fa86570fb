"""Training throughput: ``single`` vs Horovod ``data_parallel`` on 1 and 2 Dask workers, and startup overhead.

Runs real train jobs (:func:`core.training.job.run_train_job`) on a local cluster of 2 worker processes with one thread
each, on a synthetic Sentinel-2-like tile store (``--tile`` px, 10 bands, 4 classes, 20 % unlabelled pixels) in a
temporary folder. Prints samples/s (steady state, first step excluded, summed over ranks), the scaling efficiency
``sps(2 workers) / (2 * sps(1 worker))`` and the startup overhead (launch -> all ranks through ``hvd.init()`` ->
first step done). Figures also go to ``benchmarks/out/training.json``.

Usage: ``python -m benchmarks.training [--model unet|patch_cnn] [--steps 20] [--batch 4] [--tile 64]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

OUT = Path(__file__).resolve().parent / "out"


def synthetic_store(path: Path, mode: str, n: int, size: int, bands: int = 10, seed: int = 0) -> Path:
    """A store in the core/tilestore.py layout with learnable classes (``n`` train, ``n // 4`` val samples)."""
    import zarr

    from core.tiling.store import StoreInfo, TileStore

    rng = np.random.default_rng(seed)
    classes = tuple({"id": i, "name": f"class {i}", "color": f"#{i * 40:02x}8080"} for i in (1, 2, 3, 4))
    root = zarr.open_group(str(path), mode="w")
    counts = {"train": n, "val": max(n // 4, 2)}
    for split, count in counts.items():
        cls = rng.integers(0, 4, size=(count, size, size))
        x = (rng.normal(1000, 100, size=(count, size, size, bands)) + 400 * np.eye(bands)[cls]).astype(np.uint16)
        y = (cls + 1).astype(np.uint8)
        if mode == "tiles":
            y[rng.random(y.shape) < 0.2] = 0
        else:
            y = y[:, size // 2, size // 2].copy()
        g = root.require_group(split)
        for name, arr in (
            ("x_s2", x),
            ("y", y),
            ("valid", np.ones(count, bool)),
            ("loc", np.zeros((count, 4), np.int64)),
            ("date", np.zeros(count, np.int16)),
        ):
            a = g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(1, *arr.shape[1:]))
            a[...] = arr
    TileStore(path, mode="a").set_info(
        StoreInfo(
            scene={"name": "synthetic"},
            config={},
            mode=mode,
            modalities=("s2",),
            sample_size={"s2": size},
            classes=classes,
            dates=(None,),
            counts=counts,
            band_stats={"s2": {"mean": [1100.0] * bands, "std": [200.0] * bands}},
        )
    )
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("unet", "patch_cnn"), default="unet")
    p.add_argument("--steps", type=int, default=20, help="steps per epoch (2 epochs per configuration)")
    p.add_argument("--batch", type=int, default=4, help="samples per worker per step")
    p.add_argument("--tile", type=int, default=None, help="tile (U-Net, default 64) or patch (CNN, default 15) px")
    p.add_argument("--width", type=int, default=8)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from dask.distributed import Client, LocalCluster

    from core.distributed.cluster import worker_env
    from core.training.config import TrainJobConfig
    from core.training.job import run_train_job
    from db.runs import RunTracker

    mode = "tiles" if args.model == "unet" else "patches"
    size = args.tile or (64 if mode == "tiles" else 15)
    if mode == "patches":
        size |= 1  # patches are odd so they centre on their pixel
    params = {"width": args.width, "depth": 3} if args.model == "unet" else {"width": args.width}
    runs = [("single", 1), ("data_parallel", 1), ("data_parallel", 2)]
    figures: dict[str, Any] = {
        "model": args.model,
        "sample_px": size,
        "bands": 10,
        "batch_per_worker": args.batch,
        "steps_per_epoch": args.steps,
        "cpu_count": os.cpu_count(),
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKBENCH_HOME"] = tmp
        db_url = f"sqlite:///{tmp}/bench.db"
        store = synthetic_store(Path(tmp) / "store.zarr", mode, n=args.steps * args.batch * 2, size=size)
        tracker = RunTracker(db_url)
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                memory_limit="4GiB",
                env=worker_env(1),
            ) as cluster,
            Client(cluster) as client,
        ):
            # warm both workers (TensorFlow and Horovod imports) so the first configuration is not penalised
            run_train_job(
                TrainJobConfig(
                    scene="synthetic",
                    store=str(store),
                    model=args.model,
                    model_params=params,
                    scheme="data_parallel",
                    num_workers=2,
                    epochs=1,
                    batch_size=args.batch,
                    max_steps_per_epoch=2,
                    augment=False,
                ),
                client,
                store,
                run_id=tracker.create("train", {}),
            )
            for scheme, workers in runs:
                config = TrainJobConfig(
                    scene="synthetic",
                    store=str(store),
                    model=args.model,
                    model_params=params,
                    scheme=scheme,
                    num_workers=workers,
                    epochs=2,
                    batch_size=args.batch,
                    max_steps_per_epoch=args.steps,
                    augment=False,
                    log_every=args.steps,
                )
                run_id = tracker.create("train", config.model_dump(mode="json"))
                m = run_train_job(config, client, store, run_id=run_id)["metrics"]
                figures["runs"][f"{scheme}x{workers}"] = {
                    "samples_per_s": m["samples_per_s"],
                    "per_rank": m["samples_per_s_per_rank"],
                    **m["startup"],
                    "wall_s": m["wall_s"],
                    "weights_identical": m["weights_identical"],
                }
    r = figures["runs"]
    figures["scaling_efficiency"] = r["data_parallelx2"]["samples_per_s"] / (2 * r["data_parallelx1"]["samples_per_s"])
    figures["horovod_overhead_1_worker"] = 1 - r["data_parallelx1"]["samples_per_s"] / r["singlex1"]["samples_per_s"]
    print(
        f"{args.model}, {size}x{size}x10 samples, batch {args.batch}/worker, {args.steps} steps x 2 epochs, "
        f"{os.cpu_count()} cores, 1 thread per worker"
    )
    print(f"{'configuration':<18}{'samples/s':>10}{'task s':>9}{'rendezvous s':>14}{'first step s':>14}{'wall s':>9}")
    for name, f in r.items():
        print(
            f"{name:<18}{f['samples_per_s']:>10.1f}{f['launch_to_task_s']:>9.2f}{f['launch_to_rendezvous_s']:>14.2f}"
            f"{f['launch_to_first_step_s']:>14.2f}{f['wall_s']:>9.1f}"
        )
    print(f"scaling efficiency (2 workers vs 2 x 1 worker): {figures['scaling_efficiency']:.2f}")
    print(f"Horovod cost on 1 worker (data_parallel x1 vs single): {figures['horovod_overhead_1_worker']:+.1%}")
    OUT.mkdir(exist_ok=True)
    (OUT / "training.json").write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
