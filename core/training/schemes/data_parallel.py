"""Data parallelism: every rank trains the whole model on its own shard; gradients are averaged over the ranks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.training.loop import train_rank
from core.training.schemes.api import Reduction, SchemeSpec, register_scheme


def allreduce_average(values: Sequence[Any], weight: Any, hvd: Any, name: str) -> list[Any]:
    """The plain mean of ``values`` over the ranks (``weight`` unused: equal batches)."""
    return hvd.grouped_allreduce(list(values), op=hvd.Average, name=name)  # Horovod: average across ranks


SCHEME = register_scheme(
    SchemeSpec(
        name="data_parallel",
        description="Horovod ranks on equal shards, gradients averaged (Goyal et al. 2017)",
        rank_fn=train_rank,
        uses_horovod=True,
        reduction=Reduction(allreduce_average),
        shrinkable=True,
        order=10,
    )
)
