"""A deliberately slow worker for demonstrations and tests of the heterogeneous scheme.

With ``WORKBENCH_SLOWDOWN=f`` in a worker process's environment, :func:`throttle` sleeps ``(f - 1)`` times the
compute time of each training step, which is what a worker ``f`` times slower would take
(see benchmarks/heterogeneous.py).
"""

from __future__ import annotations

import os
import time

SLOWDOWN_ENV = "WORKBENCH_SLOWDOWN"
"""Environment variable of a worker process: factor >= 1 by which its training steps are made slower (default 1)."""


def slowdown() -> float:
    """This process's artificial slowdown factor (``$WORKBENCH_SLOWDOWN``, default 1 = none)."""
    raw = os.environ.get(SLOWDOWN_ENV, "1")
    try:
        f = float(raw)
    except ValueError:
        raise ValueError(f"{SLOWDOWN_ENV}={raw!r} is not a number; set a factor >= 1 (e.g. 3) or unset it") from None
    if f < 1:
        raise ValueError(f"{SLOWDOWN_ENV}={raw!r} is below 1; it makes a worker slower, so set it to 1 or more")
    return f


def throttle(compute_s: float, factor: float | None = None) -> float:
    """Sleep ``(factor - 1) * compute_s`` (factor from :func:`slowdown`); returns the seconds slept."""
    f = slowdown() if factor is None else factor
    extra = max(f - 1.0, 0.0) * compute_s
    if extra > 0:
        time.sleep(extra)
    return extra
