"""Heterogeneous data parallelism against plain data parallelism on a deliberately unequal 2-worker cluster.

A local cluster of 2 worker processes (1 thread each); one of them is made ``--slowdown`` times slower: its process
gets ``WORKBENCH_SLOWDOWN`` in its environment, and :func:`core.training.schemes.heterogeneous.throttle` then sleeps ``(f - 1)`` times
the measured compute time of each of its training steps (forward + backward pass), which is what a worker ``f``
times slower would need; the collective and the update are not stretched. Real train jobs
(:func:`core.training.job.run_train_job`) then train the same model with the same global batch (``2 x --batch``):

- ``data_parallel, equal workers``: no throttle (the reference);
- ``data_parallel, 1 slow worker``: both ranks take ``--batch`` samples, every step waits for the slow one;
- ``heterogeneous, 1 slow worker``: shares from a calibration of ``calibration_steps`` timed steps per rank, gradients
  weighted by sample count.

Each configuration runs ``--rounds`` times, alternating, so bursts of load from other processes hit them alike.
Prints, per run, the batch shares, the median seconds per step (first step excluded) and the median compute
seconds per step of each rank, and the global samples/s, and the speed-up of heterogeneous over plain data
parallelism on the unequal cluster against the ideal ``(f + 1) / 2`` (speeds 1 and 1/f: plain data parallelism waits
``f t(B)`` per step, balanced shares need ``2 t(B) / (1 + 1/f)`` when step time is proportional to the batch).
Figures go to ``benchmarks/out/heterogeneous.json``.

Usage: ``python -m benchmarks.heterogeneous [--slowdown 3] [--model resnet50|patch_cnn] [--steps 12] [--batch 16] [--rounds 2]``
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


def _set_env(key: str, value: str | None) -> None:
    """Run on one worker process: set or unset an environment variable there."""
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slowdown", type=float, default=3.0, help="factor by which worker 2 is slower")
    p.add_argument("--model", choices=("resnet50", "patch_cnn"), default="resnet50")
    p.add_argument("--steps", type=int, default=12, help="training steps per configuration (1 epoch)")
    p.add_argument("--batch", type=int, default=16, help="samples per worker per step (global batch = 2x)")
    p.add_argument("--tile", type=int, default=None, help="tile (resnet50, default 64) or patch (default 15) px")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2, help="times each configuration runs (alternating)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from dask.distributed import Client, LocalCluster

    import core.distributed.launcher as launcher
    from benchmarks.training import synthetic_store
    from core.distributed.cluster import worker_env
    from core.errors import JobFailedError
    from core.training.config import TrainJobConfig
    from core.training.job import run_train_job
    from core.training.schemes.heterogeneous import SLOWDOWN_ENV
    from db.runs import RunTracker

    def workers_now(client: Client) -> dict[str, dict[str, Any]]:
        return dict(client.sync(client.scheduler.identity, n_workers=-1).get("workers", {}))

    # Until core.distributed.launcher._workers asks the scheduler directly: client.scheduler_info() can come back
    # without workers (the client's periodic refresh asks for n_workers=0), and the launcher then stops a healthy
    # job as "worker died".
    launcher._workers = workers_now  # type: ignore[assignment]

    mode = "tiles" if args.model == "resnet50" else "patches"
    size = args.tile or (64 if mode == "tiles" else 15)
    if mode == "patches":
        size |= 1
    global_batch = 2 * args.batch
    runs = [("data_parallel", False), ("data_parallel", True), ("heterogeneous", True)]
    figures: dict[str, Any] = {
        "model": args.model,
        "width": args.width,
        "sample_px": size,
        "bands": 10,
        "global_batch": global_batch,
        "steps": args.steps,
        "slowdown": args.slowdown,
        "cpu_count": os.cpu_count(),
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKBENCH_HOME"] = tmp
        tracker = RunTracker(f"sqlite:///{tmp}/bench.db")
        store = synthetic_store(Path(tmp) / "store.zarr", mode, n=args.steps * global_batch, size=size)
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                memory_limit="6GiB",
                env=worker_env(1),
            ) as cluster,
            Client(cluster) as client,
        ):
            # asked of the scheduler directly: client.scheduler_info() can return a list cut short by the client's
            # own periodic refresh (n_workers=0)
            def pick_slow_worker() -> str:
                return str(sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])[1])

            slow = {"worker": pick_slow_worker()}

            env_value: str | None = None

            def train(scheme: str, steps: int) -> dict[str, Any]:
                config = TrainJobConfig(
                    scene="synthetic",
                    store=str(store),
                    model=args.model,
                    model_params={"width": args.width},
                    scheme=scheme,
                    num_workers=2,
                    epochs=1,
                    batch_size=args.batch,
                    max_steps_per_epoch=steps,
                    augment=False,
                    log_every=max(steps, 1),
                    optimizer="sgd_nesterov",
                )
                for attempt in range(3):
                    run_id = tracker.create("train", config.model_dump(mode="json"))
                    try:
                        out = run_train_job(config, client, store, run_id=run_id)
                        return {"metrics": out["metrics"], "ranks": out["ranks"]}
                    except JobFailedError as exc:
                        # the launcher's liveness poll reads client.scheduler_info(), which a Dask race can return
                        # without workers ("worker ... died"): the workers were restarted, so run again
                        if "died" not in str(exc) or attempt == 2:
                            raise
                        logging.warning("retrying after a spurious lost-worker failure: %s", str(exc)[:120])
                        client.wait_for_workers(2)
                        slow["worker"] = pick_slow_worker()  # restarted workers have new addresses
                        client.run(_set_env, SLOWDOWN_ENV, env_value, workers=[slow["worker"]])
                raise AssertionError("unreachable")

            train("data_parallel", 2)  # warm both workers (TensorFlow and Horovod imports)
            for _ in range(args.rounds):  # configurations alternate, so a burst of load hits them alike
                for scheme, throttled in runs:
                    env_value = str(args.slowdown) if throttled else None
                    client.run(_set_env, SLOWDOWN_ENV, env_value, workers=[slow["worker"]])
                    try:
                        out = train(scheme, args.steps)
                    finally:
                        client.run(_set_env, SLOWDOWN_ENV, None, workers=[slow["worker"]])
                    m = out["metrics"]
                    name = f"{scheme}, {'1 slow worker' if throttled else 'equal workers'}"
                    figures["runs"].setdefault(name, []).append(
                        {
                            "shares": m["batch_per_rank"],
                            "step_s_per_rank": m["step_s_per_rank"],
                            "compute_s_per_rank": m["compute_s_per_rank"],
                            "samples_per_s": m["samples_per_s"],
                            "slow_rank": next(r["rank"] for r in out["ranks"] if r["worker"] == slow["worker"]),
                            "heterogeneous": m.get("heterogeneous"),
                            "weights_identical": m["weights_identical"],
                            "wall_s": m["wall_s"],
                        }
                    )
    step = {name: float(np.median([max(x["step_s_per_rank"]) for x in xs])) for name, xs in figures["runs"].items()}
    names = list(step)
    figures["median_step_s"] = step
    figures["speedup_heterogeneous_vs_data_parallel"] = step[names[1]] / step[names[2]]
    figures["ideal_speedup"] = (args.slowdown + 1) / 2
    print(
        f"{args.model} width {args.width}, {size}x{size}x10 samples, global batch {global_batch}, {args.steps} steps, "
        f"1 worker throttled x{args.slowdown}, {args.rounds} rounds, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(f"{'configuration':<32}{'shares':>8}{'median step s/rank':>20}{'compute s/rank':>17}{'samples/s':>11}")
    for name, xs in figures["runs"].items():
        for f in xs:
            steps = "/".join(f"{v:.3f}" for v in f["step_s_per_rank"])
            comp = "/".join(f"{v:.3f}" for v in f["compute_s_per_rank"])
            print(f"{name:<32}{'/'.join(map(str, f['shares'])):>8}{steps:>20}{comp:>17}{f['samples_per_s']:>11.1f}")
    for f in figures["runs"][names[2]]:
        het_info = f["heterogeneous"]
        print(
            f"calibrated speeds (samples/s): {[round(v, 1) for v in het_info['speeds']]} -> shares "
            f"{het_info['shares']} (slow rank {f['slow_rank']})"
        )
    print("median step s: " + ", ".join(f"{k}: {v:.3f}" for k, v in step.items()))
    print(
        f"heterogeneous vs data_parallel on the unequal cluster: {figures['speedup_heterogeneous_vs_data_parallel']:.2f}x"
        f" faster per step (ideal, if step time were proportional to batch: {figures['ideal_speedup']:.2f}x)"
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "heterogeneous.json").write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
