import numpy as np

from core.training.telemetry import Telemetry, nbytes


def test_nbytes_of_nested_arrays():
    assert nbytes([np.zeros((2, 3), np.float32), {"a": np.zeros(4, np.float64)}]) == 24 + 32


def test_ring_allreduce_and_broadcast_bytes():
    t0, t1 = Telemetry(rank=0, size=4), Telemetry(rank=1, size=4)
    grads = [np.zeros(1000, np.float32)]
    t0.allreduce(grads)
    assert (t0.bytes_sent, t0.bytes_recv) == (6000, 6000)  # 2 * (4-1)/4 * 4000 bytes each way
    t0.broadcast(grads)
    t1.broadcast(grads)
    assert t0.bytes_sent == 6000 + 3 * 4000 and t1.bytes_recv == 4000
    assert t0.by_op == {"allreduce": [6000, 6000], "broadcast": [12000, 0]}


def test_single_rank_sends_nothing_and_cpu_memory_are_sampled():
    t = Telemetry(rank=0, size=1, sample_every=0.05).start()
    t.allreduce([np.zeros(10)])
    x = sum(i * i for i in range(300_000))  # some CPU work
    t.stop()
    snap = t.snapshot()
    assert x > 0 and snap["bytes_sent"] == 0 and snap["peak_mem_bytes"] > 10_000_000 and snap["cpu_percent"] > 0


def test_record_writes_one_worker_row(db_url):
    from db.runs import RunTracker
    from jobs.runner import TrackerSink

    tracker = RunTracker(db_url)
    run_id = tracker.create("train", {})
    t = Telemetry(rank=1, size=2, worker="tcp://w1").start()
    t.allreduce([np.zeros(100, np.float32)])
    t.stop()
    t.record(TrackerSink(tracker, run_id), "training", samples=8, epoch=1)
    (row,) = tracker.worker_stats(run_id)
    assert (row.worker, row.rank, row.bytes_sent, row.samples, row.data["epoch"]) == ("tcp://w1", 1, 400, 8, 1)
