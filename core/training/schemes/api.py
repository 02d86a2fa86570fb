"""The scheme registry: what a parallelism scheme is, and where the engine finds every scheme it offers.

A scheme is one :class:`SchemeSpec` registered with :func:`register_scheme` from its own module in this package.
:func:`list_schemes` and :func:`get_scheme` import every module of the package once (``pkgutil``), so a new module
is offered by config validation, the CLI and the launch form without editing any other file. A scheme module
registered elsewhere (a test, a plug-in) is offered once its module is imported.

The ranks receive the resolved spec from the driver (pickled by reference to its module), so a worker process needs
no registration of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.discovery import import_package_modules

Reduce = Callable[[Sequence[Any], Any, Any, str], list[Any]]
"""``reduce(values, weight, hvd, name) -> values``: combines this rank's tensors with the other ranks' (a collective)."""


@dataclass(frozen=True)
class Reduction:
    """How the data-parallel loop combines gradients and batch-norm statistics across ranks.

    Attributes:
        reduce: called inside the training step on every rank with this rank's gradients and its sample count
            (``weight``; the local batch for batch-norm statistics).
        sends_weight: the collective carries the weight too (counted in the rank's traffic).
    """

    reduce: Reduce
    sends_weight: bool = False


@dataclass(frozen=True)
class SchemeSpec:
    """One parallelism scheme.

    Attributes:
        name: the ``TrainJobConfig.scheme`` value.
        description: one line for the CLI and the launch form.
        rank_fn: the function each rank runs (``rank_fn(scheme, reporter, config, store_path, run_dir, run_id,
            resume_dir) -> summary``, see :func:`core.training.loop.train_rank`).
        uses_horovod: the launcher starts Horovod ranks (else one worker without Horovod).
        check: ``check(model, num_workers, worker_speeds)`` raises ValueError for a combination the scheme cannot
            train (the pipeline form checks these too).
        check_train: ``check_train(config)`` raises ValueError for other :class:`TrainJobConfig` fields it refuses.
        check_scene: ``check_scene(scene_name, modalities)`` raises ValueError for a scene the scheme cannot train on.
        reduction: gradient reduction of the data-parallel loop (None: the scheme does not run that loop, or runs
            without Horovod).
        plan: ``plan(ctx) -> BatchPlan`` for the data-parallel loop (None: equal shards,
            :func:`core.training.loop.equal_shards`).
        options: the ``TrainJobConfig`` fields only this scheme reads (the form shows them for it alone).
        weight_averaging: the scheme can average the weights over training (``ema_decay``; its ``check_train``
            refuses it otherwise).
        shrinkable: after a lost worker that does not come back, training may go on with fewer ranks (the loop
            re-shards the data and scales the learning rate by the new number of ranks).
        order: position in :func:`list_schemes` (lower first; ties in registration order).
    """

    name: str
    description: str
    rank_fn: Callable[..., dict[str, Any]]
    uses_horovod: bool
    check: Callable[[str, int, Sequence[float] | None], None] | None = None
    check_train: Callable[[Any], None] | None = None
    check_scene: Callable[[str, Sequence[str]], None] | None = None
    reduction: Reduction | None = None
    plan: Callable[[Any], Any] | None = None
    options: tuple[str, ...] = ()
    weight_averaging: bool = True
    shrinkable: bool = False
    order: int = 100


_SCHEMES: dict[str, SchemeSpec] = {}
_LOCK = threading.Lock()


def register_scheme(spec: SchemeSpec) -> SchemeSpec:
    """Add ``spec`` to the registry; returns it.

    Raises:
        ValueError: another scheme of the same name is registered.
    """
    with _LOCK:
        known = _SCHEMES.get(spec.name)
        if known is not None and known != spec:
            raise ValueError(
                f"scheme {spec.name!r} is registered twice (by {known.rank_fn.__module__} and "
                f"{spec.rank_fn.__module__}); give the new scheme another name"
            )
        _SCHEMES[spec.name] = spec
    return spec


def _discover() -> None:
    """Import every module of this package once (each registers its scheme)."""
    import_package_modules(__package__)


def list_schemes() -> tuple[str, ...]:
    """The names of every registered scheme, by :attr:`SchemeSpec.order`."""
    _discover()
    specs = list(_SCHEMES.values())
    return tuple(s.name for s in sorted(specs, key=lambda s: (s.order, specs.index(s))))


def get_scheme(name: str) -> SchemeSpec:
    """The spec of scheme ``name``.

    Raises:
        ValueError: no such scheme (the message lists the known ones, as config validation shows it).
    """
    _discover()
    try:
        return _SCHEMES[name]
    except KeyError:
        raise ValueError(f"scheme {name!r} is unknown; choose one of {list(list_schemes())}") from None


def check_combination(model: str, scheme: str, num_workers: int, worker_speeds: tuple[float, ...] | None) -> None:
    """Refuse model / scheme combinations that make no sense, saying what would (the scheme's own check)."""
    spec = get_scheme(scheme)
    if spec.check is not None:
        spec.check(model, num_workers, worker_speeds)
    if worker_speeds is not None and "worker_speeds" not in spec.options:
        users = " or ".join(repr(n) for n in list_schemes() if "worker_speeds" in get_scheme(n).options)
        raise ValueError(f"worker_speeds is only used by scheme {users}, not {scheme!r}; remove it")
