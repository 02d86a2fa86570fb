"""The papers' tables on ../shared/data and this machine, each through the public job path.

* ``table2``: multi-modal paper, Table 2: ``two_stream_rgb``, ``two_stream_hsi`` and ``two_stream`` on houston_crop
  (patches, spatial-block split). Each variant trains on a store tiled with exactly its modalities; the AOI leaves
  a margin wider than any patch, so every store samples the *same* patch centres (same seed) and the three are
  scored on the same test pixels.
* ``table3``: Table 3: SVM (RBF, one-vs-rest) and KNN (k = 5) on vectorised patches of both modalities, plus a
  per-pixel RF, against the CNN (``two_stream``), all on the two-modality store of Table 2.
* ``table4``: Table 4: inference time of data parallelism and of the baseline and optimized model-parallel splits,
  for 1K and ``--big`` patches.
* ``figure10``: Figure 10: bytes sent / received per worker per step for the model-parallel splits against batch
  size (10, 50, 200), from the run's ``worker_stats`` rows.
* ``hetero``: the heterogeneous scheme's step time against plain data parallelism on an unequal cluster
  (delegates to ``benchmarks/heterogeneous.py`` when present).

Each table is a function taking the shared :class:`benchmarks.accuracy.Bench` (temporary WORKBENCH_HOME, LocalCluster
of worker processes, one thread each) and the parsed arguments. A table whose engine part does not exist yet prints
``not available yet: <what is missing>`` instead of failing the script; a table that fails prints its error.

Usage: ``python -m benchmarks.papers [--tables table2,table3,table4,figure10,hetero] [--epochs 15]``.
The default run takes ~10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.accuracy import OUT, Bench, baseline, bench, scores, train_and_score  # noqa: E402

log = logging.getLogger("benchmarks.papers")

HOUSTON = "houston_crop"
SIZE = 512  # houston_crop label grid (RGB) side, px


class NotAvailable(Exception):
    """An engine part a table needs does not exist yet (the message says which)."""


def require_models(*names: str) -> None:
    from core.models import list_models

    missing = [n for n in names if n not in list_models()]
    if missing:
        raise NotAvailable(f"the model registry has no {missing} (core/models/two_stream.py)")


def require(module: str, *attrs: str) -> Any:
    """The module, or NotAvailable naming the module / attributes that are missing."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise NotAvailable(f"module {module} ({exc})") from exc
    missing = [a for a in attrs if not hasattr(mod, a)]
    if missing:
        raise NotAvailable(f"{module} has no {missing}")
    return mod


# ---- stores ------------------------------------------------------------------------------------------------------
_STORES: dict[tuple[str, ...], dict[str, Any]] = {}


def houston_store(b: Bench, modalities: tuple[str, ...], args: Any) -> dict[str, Any]:
    """A houston_crop patch store with ``modalities`` (tiled once per set of modalities, then reused)."""
    from benchmarks.accuracy import tile
    from core.configs import AOIConfig, SamplingConfig, SplitConfig, TileJobConfig

    if modalities not in _STORES:
        m = args.margin
        aoi = AOIConfig(
            crs="pixel",
            geometry={
                "type": "Polygon",
                "coordinates": [[(m, m), (SIZE - m, m), (SIZE - m, SIZE - m), (m, SIZE - m), (m, m)]],
            },
        )
        _STORES[modalities] = tile(
            b,
            TileJobConfig(
                scene=HOUSTON,
                mode="patches",
                modalities=modalities,
                aoi=aoi,
                sampling=SamplingConfig(patch_size=args.patch, per_class=args.per_class, seed=args.seed),
                split=SplitConfig(method="spatial", block_size=args.block, fractions=(0.6, 0.2, 0.2), seed=args.seed),
            ),
        )
    return _STORES[modalities]


def _two_stream_params(args: Any) -> dict[str, Any]:
    return {"width": args.width, "dense": [args.dense1, args.dense2], "dropout": args.dropout}


def _row(name: str, r: dict[str, Any]) -> str:
    return f"  {name:<18} {scores(r['test'])}"


# ---- tables ------------------------------------------------------------------------------------------------------
def table2(b: Bench, args: Any) -> dict[str, Any]:
    """Multi-modal paper Table 2: RGB only, HSI only, both (two-stream CNN), spatial-block split of houston_crop."""
    require_models("two_stream", "two_stream_rgb", "two_stream_hsi")
    out: dict[str, Any] = {}
    for model, mods in (("two_stream_rgb", ("rgb",)), ("two_stream_hsi", ("hsi",)), ("two_stream", ("rgb", "hsi"))):
        store = houston_store(b, mods, args)
        out[model] = train_and_score(
            b,
            store["store"],
            HOUSTON,
            model,
            _two_stream_params(args),
            args,
            scheme="data_parallel",
            num_workers=args.ranks,
        )
        out[model]["counts"] = store["counts"]
    print("Table 2 (houston_crop, spatial blocks): two-stream CNN by modality")
    for model in out:
        print(_row(model, out[model]) + f"  [{out[model]['train_s']:.0f} s train]")
    return out


def table3(b: Bench, args: Any) -> dict[str, Any]:
    """Multi-modal paper Table 3: SVM and KNN on vectorised patches (and an RF) against the CNN."""
    store = houston_store(b, ("rgb", "hsi"), args)
    out: dict[str, Any] = {"counts": store["counts"]}
    for method in ("svm", "knn", "rf"):
        features = "center" if method == "rf" else "patch"
        out[f"{method} ({features})"] = baseline(b, store["store"], HOUSTON, method, features)
    cnn = "two_stream"
    try:
        require_models(cnn)
    except NotAvailable:
        cnn = "patch_cnn"  # the engine issue's CNN, on both modalities (upsampled and stacked)
    params = _two_stream_params(args) if cnn == "two_stream" else {"width": args.width * 4}
    cached = _RESULTS.get("table2", {}).get(cnn)
    out[cnn] = cached or train_and_score(b, store["store"], HOUSTON, cnn, params, args)
    print(f"Table 3 (houston_crop, spatial blocks, split {store['counts']}): classic baselines vs the CNN")
    for name, r in out.items():
        if name == "counts":
            continue
        extra = (
            f"  [{r['baseline']['n_train']} train rows x {r['baseline']['n_features']} features, {r['seconds']:.0f} s]"
            if "baseline" in r
            else f"  [{r['train_s']:.0f} s train]"
        )
        print(_row(name, r) + extra)
    return out


def table4(b: Bench, args: Any) -> dict[str, Any]:
    """Multi-modal paper Table 4: inference time, data parallel vs model-parallel baseline / optimized splits.

    Patches of the two-modality store's test split (cycled to reach the count), a trained ``two_stream`` bundle;
    data parallel runs as many ranks as the model-parallel schemes (3), each with the whole model. Seconds are the
    slowest rank's, startup excluded (:func:`core.training.schemes.model_parallel.time_inference`).
    """
    require_models("two_stream")
    mp = require("core.training.schemes.model_parallel", "time_inference")
    from core.training.schemes.model_parallel import MODEL_PARALLEL_RANKS

    _need_workers(b, MODEL_PARALLEL_RANKS)
    store = houston_store(b, ("rgb", "hsi"), args)
    model = _RESULTS.get("table2", {}).get("two_stream") or train_and_score(
        b, store["store"], HOUSTON, "two_stream", _two_stream_params(args), args
    )
    out: dict[str, Any] = {}
    for n in (1000, args.big):
        row: dict[str, Any] = {}
        for scheme, split in (("data_parallel", None), ("model_parallel", "baseline"), ("model_parallel", "optimized")):
            r = mp.time_inference(
                b.client,
                model["model_dir"],
                store["store"],
                scheme=scheme,
                mp_split=split or "baseline",
                n_patches=n,
                batch_size=args.infer_batch,
                num_ranks=MODEL_PARALLEL_RANKS,
                timeout=args.run_timeout,
            )
            row[f"mp_{split}" if split else scheme] = {
                "seconds": r["seconds"],
                "wall_s": r["wall_s"],
                "patches_per_s": r["patches_per_s"],
            }
        out[str(n)] = row
    print(
        f"Table 4 (houston_crop two_stream, {MODEL_PARALLEL_RANKS} ranks, batch {args.infer_batch}): "
        "inference seconds (slowest rank, startup excluded)"
    )
    for n, row in out.items():
        print(f"  {n:>7} patches  " + "  ".join(f"{k} {v['seconds']:.2f} s" for k, v in row.items()))
    return out


def _need_workers(b: Bench, n: int) -> None:
    have = len(b.client.scheduler_info(n_workers=-1)["workers"])
    if have < n:
        raise NotAvailable(
            f"this table needs {n} worker processes, the benchmark cluster has {have}; run with --workers {n}"
        )


def figure10(b: Bench, args: Any) -> dict[str, Any]:
    """Multi-modal paper Figure 10: traffic per worker per step against batch size, both model-parallel splits."""
    require_models("two_stream")
    require("core.training.schemes.model_parallel", "mp_train_rank")
    from core.training.config import TrainJobConfig
    from core.training.schemes.model_parallel import MODEL_PARALLEL_RANKS
    from db.runs import RunTracker

    _need_workers(b, MODEL_PARALLEL_RANKS)
    store = houston_store(b, ("rgb", "hsi"), args)
    out: dict[str, Any] = {}
    for split in ("baseline", "optimized"):
        for batch in (10, 50, 200):
            cfg = TrainJobConfig(
                scene=HOUSTON,
                store=store["store"],
                model="two_stream",
                model_params=_two_stream_params(args),
                scheme="model_parallel",
                num_workers=MODEL_PARALLEL_RANKS,
                mp_split=split,
                batch_size=batch,
                epochs=1,
                max_steps_per_epoch=args.mp_steps,
                augment=False,
            )
            row = b.run(cfg, timeout=args.run_timeout)
            if row.status != "succeeded":
                raise RuntimeError(f"model-parallel run {row.id} {row.status}: {row.error}")
            steps = args.mp_steps
            per: dict[str, dict[str, float]] = {}
            for s in RunTracker(b.db_url).worker_stats(row.id):  # cumulative since the rank started: keep the last
                w = per.setdefault(f"rank {s.rank}", {"sent": 0.0, "recv": 0.0})
                w["sent"] = max(w["sent"], float(s.bytes_sent))
                w["recv"] = max(w["recv"], float(s.bytes_recv))
            out[f"{split} b={batch}"] = {k: {d: v / steps / 2**20 for d, v in w.items()} for k, w in per.items()}
    print("Figure 10 (houston_crop): MiB per worker per step (sent / received)")
    for key, per in out.items():
        print(f"  {key:<16} " + "  ".join(f"{w}: {v['sent']:.2f}/{v['recv']:.2f}" for w, v in sorted(per.items())))
    return out


def hetero(b: Bench, args: Any) -> dict[str, Any]:
    """Balanced-gradient paper: heterogeneous data parallelism vs plain data parallelism on an unequal cluster."""
    mod = require("benchmarks.heterogeneous", "main")
    return mod.main(args.hetero_args.split() if args.hetero_args else [])


TABLES: dict[str, Callable[[Bench, Any], dict[str, Any]]] = {
    "table2": table2,
    "table3": table3,
    "table4": table4,
    "figure10": figure10,
    "hetero": hetero,
}
_RESULTS: dict[str, Any] = {}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default="table2,table3,table4,figure10,hetero")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--patch", type=int, default=17, help="RGB patch side (HSI: a quarter, made odd: 5)")
    p.add_argument("--per-class", type=int, default=600, help="patches per class (class-balanced)")
    p.add_argument("--block", type=int, default=64, help="spatial block side, RGB px")
    p.add_argument("--margin", type=int, default=16, help="AOI margin, RGB px (>= the widest half patch)")
    p.add_argument("--width", type=int, default=8, help="two-stream width (filters of the first 3D block)")
    p.add_argument("--dense1", type=int, default=256, help="first dense layer (the paper: 1000)")
    p.add_argument("--dense2", type=int, default=128, help="second dense layer (the paper: 500)")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--workers", type=int, default=3, help="cluster worker processes (model parallelism needs 3)")
    p.add_argument("--infer-batch", type=int, default=100, help="Table 4 patches per forward pass")
    p.add_argument("--big", type=int, default=5_000, help="the larger patch count of Table 4")
    p.add_argument("--mp-steps", type=int, default=5, help="steps per Figure 10 run")
    p.add_argument("--run-timeout", type=float, default=240, help="seconds before a Table 4 / Figure 10 run is stopped")
    p.add_argument("--hetero-args", default="--model patch_cnn", help="arguments for benchmarks.heterogeneous")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, help="use this folder as WORKBENCH_HOME and keep it")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    names = [n.strip() for n in args.tables.split(",") if n.strip()]
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise SystemExit(f"unknown tables {unknown}; choose from {list(TABLES)}")
    status: dict[str, str] = {}
    t_all = time.perf_counter()
    with bench([HOUSTON], n_workers=max(args.workers, args.ranks), keep=args.keep) as b:
        for name in names:
            t0 = time.perf_counter()
            try:
                _RESULTS[name] = TABLES[name](b, args)
                status[name] = f"done in {time.perf_counter() - t0:.0f} s"
            except NotAvailable as exc:
                status[name] = f"not available yet: {exc}"
                print(f"{name}: not available yet: {exc}", flush=True)
            except Exception as exc:  # noqa: BLE001 - one table failing must not hide the others
                log.exception("table %s failed", name)
                status[name] = f"FAILED: {type(exc).__name__}: {exc}"
                print(f"{name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
    print(f"total {time.perf_counter() - t_all:.0f} s; " + "; ".join(f"{k}: {v}" for k, v in status.items()))
    for r in _RESULTS.values():
        for v in r.values() if isinstance(r, dict) else ():
            if isinstance(v, dict):
                v.pop("model_dir", None)
    OUT.mkdir(exist_ok=True)
    (OUT / "papers.json").write_text(
        json.dumps({"args": vars(args), "status": status, "results": _RESULTS}, indent=1, default=str)
    )
    return {"status": status, "results": _RESULTS}


if __name__ == "__main__":
    main()
