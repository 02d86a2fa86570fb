import numpy as np

from core.telemetry import Telemetry, nbytes


def test_nbytes_of_nested_arrays():
    assert nbytes([np.zeros((2, 3), np.float32), {"a": np.zeros(4, np.float64)}]) == 24 + 32


def test_ring_allreduce_and_broadcast_bytes():
    t0, t1 = Telemetry(rank=0, size=4), Telemetry(rank=1, size=4)
    grads = [np.zeros(1000, np.float32)]
    t0.allreduce(grads)
    assert (t0.bytes_sent, t0.bytes_recv) == (3000, 3000)  # 2 * 3/4 * 4000 bytes
    t0.broadcast(grads)
    t1.broadcast(grads)
    assert t0.bytes_sent == 3000 + 3 * 4000 and t1.bytes_recv == 4000
    assert t0.by_op == {"allreduce": [3000, 3000], "broadcast": [12000, 0]}


def test_single_rank_sends_nothing_and_cpu_memory_are_sampled():
    t = Telemetry(rank=0, size=1, sample_every=0.05).start()
    t.allreduce([np.zeros(10)])
    x = sum(i * i for i in range(300_000))  # some CPU work
    t.stop()
    snap = t.snapshot()
    assert x > 0 and snap["bytes_sent"] == 0 and snap["peak_mem_bytes"] > 10_000_000 and snap["cpu_percent"] > 0
