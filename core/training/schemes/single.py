"""One worker, no Horovod: the plain training loop."""

from __future__ import annotations

from typing import Any

from core.training.loop import train_rank
from core.training.schemes.api import SchemeSpec, register_scheme


def _check_train(config: Any) -> None:
    if config.num_workers != 1:
        raise ValueError(f"scheme 'single' trains on one worker but num_workers={config.num_workers}; "
                         "use scheme 'data_parallel' or num_workers=1")


SCHEME = register_scheme(SchemeSpec(
    name="single", description="one worker, no Horovod", rank_fn=train_rank, uses_horovod=False,
    check_train=_check_train, order=0))
