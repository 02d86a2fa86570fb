"""One worker, no Horovod: the plain training loop."""

from __future__ import annotations

from collections.abc import Sequence

from core.training.loop import train_rank
from core.training.schemes.api import SchemeSpec, register_scheme


def _check(model: str, num_workers: int, worker_speeds: Sequence[float] | None) -> None:
    if num_workers != 1:
        raise ValueError(
            f"scheme 'single' trains on one worker but num_workers={num_workers}; "
            "use scheme 'data_parallel' or num_workers=1"
        )


SCHEME = register_scheme(
    SchemeSpec(
        name="single",
        description="one worker, no Horovod",
        rank_fn=train_rank,
        uses_horovod=False,
        check=_check,
        order=0,
    )
)
