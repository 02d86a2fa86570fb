"""The task registry: what a model's outputs mean, how it is trained, scored and applied to a scene.

A task module of :mod:`core.tasks` (``dense``, ``patch``, ``multilabel``) calls :func:`register_task` at import; the
first :func:`get_task` or :func:`list_tasks` imports every module of the package. Models name their task (:class:`core.models.api.ModelSpec.task`); the training
loop, evaluation, inference, pre-flight and the launch form ask the task (:func:`get_task`) instead of comparing
task names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.discovery import import_package_modules
from core.errors import ConfigError
from core.tasks.predictors import WindowPredictor

LossFn = Callable[[Any, Any], tuple[Any, Any, Any]]
"""``loss(y, probs) -> (data_loss, denom, stats)`` as TensorFlow ops (see :attr:`TaskSpec.make_loss`)."""
Batches = Iterator[tuple[np.ndarray, np.ndarray]]
"""(store labels, model outputs) of consecutive batches of a store split."""


@dataclass(frozen=True)
class TaskSpec:
    """A registered task.

    Attributes:
        name: the ``task`` of a model spec and of a bundle's meta.
        store_mode: the tile-store mode its models train on: ``"tiles"`` or ``"patches"``.
        make_loss: ``make_loss(num_classes[, weights]) -> loss(y, probs) -> (data_loss, denom, stats)``
            (``weights``: one per class, passed only to ``class_weighted`` tasks): ``data_loss`` is a
            mean over ``denom`` items (labelled pixels, centre labels, weighted tiles), the count heterogeneous
            averaging weighs a rank's gradient by; ``stats`` is a float vector summed over batches and ranks whose
            first two entries are ``[correct, counted]``.
        targets: ``targets(labels, index, class_ids, label_fraction) -> y``: the training targets of store labels
            ``labels`` (raw class ids), given ``index`` (the labels as output indices, -1 = unlabelled).
        augment: ``augment(xs, y, rng) -> (xs, y)``: a random flip / rotation of a batch.
        score: ``score(batches, meta, label_fraction) -> metrics`` over a whole store split.
        headline: ``headline(metrics) -> str``, one line for the log.
        predictor: how a bundle of this task maps a scene (:class:`core.tasks.predictors.WindowPredictor`);
            None: the task makes no per-pixel map.
        activation_channels: pre-flight's activation channels per input pixel for models that give none.
        train_options: TrainJobConfig fields that only this task uses (the form shows them only here).
        mixup: batches may be blended with mixup (soft targets make sense).
        epoch_scores: ``epoch_scores(prefix, stats, class_ids) -> dict`` of extra epoch metrics from summed
            ``stats`` (None: none).
        meta_extra: ``meta_extra(train_config) -> dict`` stored in the bundle meta's ``extra`` (None: nothing).
        class_weighted: its loss takes per-class weights (inverse frequency of the train split, see
            :func:`core.tasks.dense.class_weights`), so every scheme that uses the task's loss weighs rare classes.
        random_windows: its models may train on random windows inside the stored tiles (dense tiles).
    """

    name: str
    store_mode: str
    make_loss: Callable[..., LossFn]
    targets: Callable[[np.ndarray, np.ndarray, Sequence[int], float], np.ndarray]
    augment: Callable[[list[np.ndarray], np.ndarray, np.random.Generator], tuple[list[np.ndarray], np.ndarray]]
    score: Callable[[Batches, Any, float | None], dict[str, Any]]
    headline: Callable[[dict[str, Any]], str]
    predictor: WindowPredictor | None = None
    activation_channels: int = 192
    train_options: tuple[str, ...] = ()
    mixup: bool = False
    epoch_scores: Callable[[str, np.ndarray, Sequence[int]], dict[str, Any]] | None = None
    meta_extra: Callable[[Any], dict[str, Any]] | None = None
    class_weighted: bool = False
    random_windows: bool = False

    @property
    def makes_map(self) -> bool:
        """A bundle of this task maps a scene pixel by pixel."""
        return self.predictor is not None

    @property
    def tiles(self) -> bool:
        """Its models train on square tiles (``tiling.tile_size``) rather than patches (``sampling.patch_size``)."""
        return self.store_mode == "tiles"


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the registry; returns it.

    Raises:
        ConfigError: another task is registered under ``spec.name`` or the store mode is unknown.
    """
    if spec.store_mode not in ("tiles", "patches"):
        raise ConfigError(f"task {spec.name!r} trains on store mode {spec.store_mode!r}; use 'tiles' or 'patches'")
    known = _REGISTRY.get(spec.name)
    if known is not None and known != spec:
        raise ConfigError(f"task {spec.name!r} is registered twice; give the new task another name")
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    """Import every module of :mod:`core.tasks` once (each task registers itself)."""
    import_package_modules("core.tasks")


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``.

    Raises:
        ConfigError: no task of that name is registered (the message lists those that are).
    """
    _discover()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigError(
            f"task {name!r} is unknown; choose one of {list_tasks()} (a new task registers itself "
            "with core.tasks.register_task in its own module)"
        )
    return spec


def list_tasks() -> list[str]:
    """Names of the registered tasks, in registration order."""
    _discover()
    return list(_REGISTRY)
