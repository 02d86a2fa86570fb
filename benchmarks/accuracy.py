"""Accuracy on real data: the patch CNN and the U-Net against a per-pixel random forest on the same split.

Issue 3's acceptance. Three splits of ``../shared/data``:

* ``date``: strzegom, trained on five dates, tested on the sixth (2023-03-01);
* ``spatial``: strzegom, spatial blocks (all six dates; a block's samples of every date stay in its split);
* ``nc``: north_carolina against strata.tif, spatial blocks.

Everything runs through the real job path, each step a tracked run in a temporary ``WORKBENCH_HOME``
(:func:`jobs.runner.execute` with the registered job kinds): tile runs (a patch store for the CNN, a tile store for
the U-Net), train runs (``data_parallel``, 2 Horovod ranks on a LocalCluster of 2 worker processes with 1 thread
each), evaluate runs (the bundle on the store's test split) and baseline runs (``rf`` on the *same* store: the
patch store's centre pixels, the tile store's labelled pixels). Each deep model is compared with the RF scored on
exactly its test rows. Prints OA / kappa / macro F1 / mIoU, the split record and the sample counts; figures go to
``benchmarks/out/accuracy.json``.

Usage: ``python -m benchmarks.accuracy [--experiments date,spatial,nc] [--models patch_cnn,unet] [--epochs 8]
[--patch 9] [--tile 64]`` (``--models patch_cnn,patch_fcn`` compares the two patch classifiers on one patch store)
(``--help`` lists the model / sampling knobs). Each deep model trains once per ``--seeds`` seed (default 3) and
the comparison uses the mean; the default run takes ~35 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "out"
SHARED = (REPO.parent / "shared" / "data").resolve()
METRICS = (("overall_accuracy", "OA"), ("kappa", "kappa"), ("macro_f1", "macro F1"), ("mean_iou", "mIoU"))


# ---- the job path, shared with benchmarks/papers.py ------------------------------------------------------------------
@dataclass
class Bench:
    """A temporary workbench: home, database, a 2-worker LocalCluster and its client."""

    home: Path
    db_url: str
    client: Any

    def run(self, config: Any, timeout: float | None = None) -> Any:
        """Run ``config`` as a tracked job through its registered kind; returns the finished run row.

        With ``timeout`` (seconds) the run is cancelled through the database, as a user would from the GUI, when it
        takes longer (the job raises JobCancelledError).
        """
        import threading

        from db.runs import RunTracker
        from jobs.kinds import list_kinds
        from jobs.runner import execute

        tracker = RunTracker(self.db_url)
        run_id = tracker.create(config.kind, config.model_dump(mode="json"))
        timer = threading.Timer(timeout, tracker.request_cancel, (run_id,)) if timeout else None
        t0 = time.perf_counter()
        if timer:
            timer.start()
        try:
            execute(config, list_kinds()[config.kind].executor, run_id=run_id, db_url=self.db_url, client=self.client)
        finally:
            if timer:
                timer.cancel()
        row = tracker.get(run_id)
        logging.getLogger("benchmarks").info(
            "run %d (%s) %s in %.1f s", run_id, config.kind, row.status, time.perf_counter() - t0
        )
        return row


@contextlib.contextmanager
def bench(
    scenes: list[str], n_workers: int = 2, threads_per_worker: int = 1, keep: str | None = None
) -> Iterator[Bench]:
    """A temporary WORKBENCH_HOME with ``scenes`` (sample folders) registered and a LocalCluster of worker
    processes; everything is removed afterwards (unless ``keep`` names a folder to use instead)."""
    import dask
    from dask.distributed import Client, LocalCluster

    from core.data.samples import register_samples
    from core.distributed.cluster import worker_env
    from db.scenes import SceneStore

    with contextlib.ExitStack() as stack:
        # Dask: the client's periodic scheduler-info refresh (n_workers=0, empty "workers") can overwrite the answer
        # of a concurrent client.scheduler_info(n_workers=-1), which makes the Horovod launcher think its workers
        # died; refresh only on demand while benchmarking.
        stack.enter_context(dask.config.set({"distributed.client.scheduler-info-interval": "3600s"}))
        home = Path(keep) if keep else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wb-bench-")))
        home.mkdir(parents=True, exist_ok=True)
        saved = {k: os.environ.get(k) for k in ("WORKBENCH_HOME", "WORKBENCH_DB_URL", "WORKBENCH_DATA_ROOTS")}
        db_url = f"sqlite:///{home / 'workbench.db'}"
        os.environ.update(
            {
                "WORKBENCH_HOME": str(home),
                "WORKBENCH_DB_URL": db_url,
                "WORKBENCH_DATA_ROOTS": os.pathsep.join([str(SHARED), str(home)]),
            }
        )
        try:
            register_samples(SHARED, SceneStore(db_url), home, only=scenes)
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    processes=True,
                    dashboard_address=":0",
                    memory_limit="6GiB",
                    env=worker_env(threads_per_worker),
                )
            )
            client = stack.enter_context(Client(cluster))
            yield Bench(home, db_url, client)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def tile(b: Bench, config: Any) -> dict[str, Any]:
    """Run a tile job; returns ``{"store", "counts", "class_counts"}``."""
    row = b.run(config)
    return {"store": row.artifacts["store"], **row.metrics}


def train_and_score(
    b: Bench, store: str, scene: str, model: str, params: dict[str, Any], args: Any, **extra: Any
) -> dict[str, Any]:
    """Train ``model`` on ``store`` (train run) and score its bundle on the test split (evaluate run)."""
    from core.configs import EvaluateJobConfig
    from core.training.config import TrainJobConfig

    cfg = dict(
        scene=scene,
        store=store,
        model=model,
        model_params=params,
        scheme="data_parallel",
        num_workers=args.ranks,
        epochs=args.epochs,
        batch_size=args.batch,
        learning_rate=args.lr,
        warmup_epochs=1,
        lr_decay_epochs=max(1, args.epochs // 2),
        patience=args.patience,
        max_steps_per_epoch=args.max_steps,
        log_every=50,
    )
    cfg.update(extra)
    t0 = time.perf_counter()
    train = b.run(TrainJobConfig(**cfg))
    train_s = time.perf_counter() - t0
    test = b.run(EvaluateJobConfig(method="model", model=train.artifacts["model"], store=store, split="test"))
    tm = train.metrics
    return {
        "test": test.metrics,
        "train_s": round(train_s, 1),
        "epochs_run": tm.get("epochs_run"),
        "samples_per_s": tm.get("samples_per_s"),
        "best_epoch": tm.get("best_epoch"),
        "weights_identical": tm.get("weights_identical"),
        "model_dir": train.artifacts["model"],
        "final": tm.get("final"),
    }


def baseline(
    b: Bench, store: str, scene: str, method: str = "rf", features: str = "center", max_train: int = 50_000
) -> dict[str, Any]:
    """A baseline run on ``store``; returns its test metrics and training info."""
    from core.configs import BaselineJobConfig

    t0 = time.perf_counter()
    row = b.run(
        BaselineJobConfig(
            scene=scene,
            store=store,
            method=method,
            features=features,  # type: ignore[arg-type]
            max_train_samples=max_train,
        )
    )
    return {
        "test": row.metrics["test"],
        "baseline": row.metrics["baseline"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def scores(m: dict[str, Any]) -> str:
    return "  ".join(f"{label} {m[k]:.3f}" for k, label in METRICS) + f"  (n={m['n_pixels']})"


# ---- the experiments ---------------------------------------------------------------------------------------------
def experiments(args: Any) -> dict[str, dict[str, Any]]:
    """Scene and split of each experiment (name -> {"scene", "split", "dates", "describe"})."""
    from core.configs import SplitConfig

    return {
        "date": {
            "scene": "strzegom",
            "describe": "strzegom, train on 5 dates, test on 2023-03-01",
            "split": SplitConfig(method="date", test_date="2023-03-01"),
        },
        "spatial": {
            "scene": "strzegom",
            "describe": f"strzegom, spatial blocks of {args.block} px, all 6 dates",
            "split": SplitConfig(method="spatial", block_size=args.block, fractions=(0.6, 0.2, 0.2), seed=args.seed),
        },
        # north_carolina is one 443 x 489 px date: smaller blocks and tiles, or the test split is a few tiles.
        "nc": {
            "scene": "north_carolina",
            "describe": f"north_carolina vs strata.tif, spatial blocks of {args.nc_block} px, {args.nc_tile} px tiles",
            "split": SplitConfig(method="spatial", block_size=args.nc_block, fractions=(0.6, 0.2, 0.2), seed=args.seed),
            "tile": args.nc_tile,
            "per_class": args.nc_per_class,
        },
    }


def run_experiment(b: Bench, name: str, exp: dict[str, Any], args: Any) -> dict[str, Any]:
    from core.configs import SamplingConfig, TileJobConfig, TilingConfig

    scene, split = exp["scene"], exp["split"]
    out: dict[str, Any] = {"describe": exp["describe"], "split_config": split.model_dump(mode="json")}
    patches = tile(
        b,
        TileJobConfig(
            scene=scene,
            mode="patches",
            split=split,
            sampling=SamplingConfig(
                patch_size=args.patch, per_class=exp.get("per_class", args.per_class), seed=args.seed
            ),
        ),
    )
    tiles = tile(
        b,
        TileJobConfig(
            scene=scene,
            mode="tiles",
            split=split,
            tiling=TilingConfig(tile_size=exp.get("tile", args.tile), stride=args.stride),
        ),
    )
    out["patch_store"] = {k: patches[k] for k in ("counts", "class_counts")}
    out["tile_store"] = {k: tiles[k] for k in ("counts", "class_counts")}
    from core.tiling.store import TileStore

    out["split_record"] = {k: v for k, v in TileStore(patches["store"]).info.split.items() if k != "blocks"}
    if split.method == "spatial":
        blocks = TileStore(patches["store"]).info.split.get("blocks", [])
        out["split_record"]["blocks_per_split"] = {
            s: sum(1 for bl in blocks if bl[4] == s) for s in ("train", "val", "test")
        }
    seeds = [int(x) for x in str(args.seeds).split(",")]
    for model in deep_models(args):
        if model == "unet":
            out["unet"] = [
                train_and_score(
                    b,
                    tiles["store"],
                    scene,
                    "unet",
                    {"width": args.unet_width, "depth": args.depth, "dropout": args.unet_dropout},
                    args,
                    batch_size=args.unet_batch,
                    epochs=args.unet_epochs,
                    lr_decay_epochs=max(1, args.unet_epochs // 3),
                    patience=args.unet_patience,
                    ema_decay=args.unet_ema,
                    seed=seed,
                )
                for seed in seeds
            ]
        else:
            out[model] = [
                train_and_score(
                    b, patches["store"], scene, model, {"width": args.width, "dropout": args.dropout}, args, seed=seed
                )
                for seed in seeds
            ]
    if any(m != "unet" for m in deep_models(args)):
        out["rf_patch_store"] = baseline(b, patches["store"], scene, "rf")
    if "unet" in deep_models(args):
        out["rf_tile_store"] = baseline(b, tiles["store"], scene, "rf", max_train=args.rf_max_train)
    return out


def deep_models(args: Any) -> list[str]:
    """The deep models of ``--models``: ``unet`` on the tile store, patch models (``patch_cnn``, ``patch_fcn``) on
    the patch store."""
    return [m.strip() for m in str(args.models).split(",") if m.strip()]


def report(name: str, r: dict[str, Any]) -> list[str]:
    lines = [
        f"== {name}: {r['describe']}",
        f"   split: {json.dumps(r['split_record'])}",
        f"   patch store samples {r['patch_store']['counts']} (patches; class-balanced <= per class per date)",
        f"   tile store tiles {r['tile_store']['counts']}, labelled px "
        f"{ {s: sum(c.values()) for s, c in r['tile_store']['class_counts'].items()} }",
    ]
    for deep in (m for m in r if m in ("unet", "patch_cnn", "patch_fcn")):
        rf, rows = (
            ("rf_tile_store", "every labelled pixel of the test tiles")
            if deep == "unet"
            else ("rf_patch_store", "centre pixels of the test patches")
        )
        f = r[rf]["test"]
        lines.append(f"   on {rows}:")
        wins = []
        for i, run in enumerate(r[deep]):
            d = run["test"]
            wins.append(d["overall_accuracy"] > f["overall_accuracy"] and d["kappa"] > f["kappa"])
            lines.append(
                f"     {deep + ' #' + str(i + 1):<12} {scores(d)}  [{run['epochs_run'][-1]} epochs, "
                f"{run['train_s']:.0f} s]"
            )
        oa = np.array([run["test"]["overall_accuracy"] for run in r[deep]])
        kappa = np.array([run["test"]["kappa"] for run in r[deep]])
        beats = oa.mean() > f["overall_accuracy"] and kappa.mean() > f["kappa"]
        lines += [
            f"     {'RF':<12} {scores(f)}  [{r[rf]['baseline']['n_train']} train rows]",
            f"     {deep} over {len(oa)} seeds: OA {oa.mean():.3f} +- {oa.std():.3f}, "
            f"kappa {kappa.mean():.3f} +- {kappa.std():.3f}; beats the RF: {'YES' if beats else 'NO'} "
            f"(mean OA {oa.mean() - f['overall_accuracy']:+.3f}, kappa {kappa.mean() - f['kappa']:+.3f}; "
            f"{sum(wins)}/{len(wins)} seeds beat it)",
        ]
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", default="date,spatial,nc", help="comma list of date, spatial, nc")
    p.add_argument(
        "--models", default="patch_cnn,unet", help="deep models to train (comma list of patch_cnn, patch_fcn, unet)"
    )
    p.add_argument("--epochs", type=int, default=8, help="patch CNN epochs")
    p.add_argument(
        "--unet-epochs",
        type=int,
        default=60,
        help="U-Net epochs (the rate halves every third of them); 12 left it undertrained on strzegom",
    )
    p.add_argument("--unet-patience", type=int, default=10, help="U-Net early-stopping patience (epochs)")
    p.add_argument(
        "--unet-ema",
        type=float,
        default=0.995,
        help="U-Net weight averaging (EMA decay; 0 = off): steadies its accuracy on a new date",
    )
    p.add_argument("--patch", type=int, default=9, help="patch side, label-grid px (odd)")
    p.add_argument("--per-class", type=int, default=200, help="patches per class per date (class-balanced)")
    p.add_argument("--tile", type=int, default=64, help="U-Net tile side, px")
    p.add_argument("--stride", type=int, default=None, help="tile stride (default: no overlap)")
    p.add_argument(
        "--block", type=int, default=128, help="spatial-split block side, px (>= 2 tiles: the buffer is a tile)"
    )
    p.add_argument("--nc-block", type=int, default=64, help="north_carolina spatial block side, px")
    p.add_argument("--nc-tile", type=int, default=32, help="north_carolina U-Net tile side, px")
    p.add_argument("--nc-per-class", type=int, default=600, help="north_carolina patches per class")
    p.add_argument("--width", type=int, default=32, help="patch CNN width")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--unet-width", type=int, default=16)
    p.add_argument("--depth", type=int, default=3, help="U-Net depth")
    p.add_argument("--unet-dropout", type=float, default=0.5, help="the thesis' dropout")
    p.add_argument("--batch", type=int, default=32, help="patch CNN batch per rank")
    p.add_argument("--unet-batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3, help="base learning rate (x ranks after warm-up)")
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch")
    p.add_argument("--ranks", type=int, default=2, help="Horovod ranks (data_parallel)")
    p.add_argument("--rf-max-train", type=int, default=30_000, help="RF training rows (tile stores)")
    p.add_argument("--seed", type=int, default=0, help="split and sampling seed")
    p.add_argument("--seeds", default="0,1,2", help="training seeds of each deep model (comma list)")
    p.add_argument("--keep", default=None, help="use this folder as WORKBENCH_HOME and keep it")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    names = [n.strip() for n in args.experiments.split(",") if n.strip()]
    exps = experiments(args)
    unknown = [n for n in names if n not in exps]
    if unknown:
        raise SystemExit(f"unknown experiments {unknown}; choose from {list(exps)}")
    scenes = sorted({exps[n]["scene"] for n in names})
    results: dict[str, Any] = {"args": vars(args), "experiments": {}}
    t0 = time.perf_counter()
    with bench(scenes, n_workers=max(2, args.ranks), keep=args.keep) as b:
        for n in names:
            t = time.perf_counter()
            results["experiments"][n] = run_experiment(b, n, exps[n], args)
            results["experiments"][n]["seconds"] = round(time.perf_counter() - t, 1)
            print("\n".join(report(n, results["experiments"][n])), flush=True)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"total {results['seconds']:.0f} s on {os.cpu_count()} cores; {args.ranks} ranks x 1 thread")
    OUT.mkdir(exist_ok=True)
    for r in results["experiments"].values():
        for k in (m for m in ("patch_cnn", "patch_fcn", "unet") if m in r):
            for run in r[k]:
                run.pop("model_dir", None)
    (OUT / "accuracy.json").write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
