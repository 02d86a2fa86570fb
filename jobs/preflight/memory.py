"""The memory model: a rough upper estimate of one worker's peak memory for a job, in bytes.

A job kind names its model in :attr:`jobs.kinds.Needs.memory`: :func:`training_memory` for the kinds that train a
deep model on a tile job (pipeline, train with a ``tile_job``), :func:`baseline_memory` for the classic baselines.
:func:`estimate_memory_per_worker` looks the model up for any config.
"""

from __future__ import annotations

import math
from typing import Any

from core.configs import BaselineJobConfig, TileJobConfig
from core.data.scene import Scene
from core.models import get_model
from core.tasks import get_task
from core.training.config import TrainJobConfig
from jobs.preflight.aoi_stats import AOIStats

FRAMEWORK_BYTES = 700 * 2**20
"""Resident memory of a worker with TensorFlow and Horovod loaded, before any data (measured order of magnitude)."""
BASELINE_BYTES = 300 * 2**20
"""Resident memory of a worker fitting a scikit-learn baseline, before any data (order of magnitude)."""


def _n_patches(per_class: int | None, scene: Scene, stats: AOIStats | None) -> int:
    """Patches a patch sampling takes from the AOI: every labelled pixel, or ``per_class`` of each class."""
    labelled = stats.labelled if stats else scene.primary.height * scene.primary.width
    n_classes = max(1, len(stats.per_class) if stats else len(scene.classes))
    return min(labelled, per_class * n_classes) if per_class else labelled


def _n_samples(tile: TileJobConfig, scene: Scene, stats: AOIStats | None) -> tuple[int, int]:
    """(sample side in px, samples) of a tile job over the AOI (all dates for tiles)."""
    if tile.mode == "tiles":
        rows, cols = stats.bbox_shape if stats else (scene.primary.height, scene.primary.width)
        dates = max(1, len(scene.acquisitions))
        step = tile.tiling.step
        return tile.tiling.tile_size, math.ceil(rows / step) * math.ceil(cols / step) * dates
    return tile.sampling.patch_size, _n_patches(tile.sampling.per_class, scene, stats)


def training_memory(tile: TileJobConfig, train: TrainJobConfig, scene: Scene, stats: AOIStats | None) -> int:
    """Framework baseline + the worker's shard of the training samples (float32) + activations and gradients of one
    batch (2x forward activations, the model's (or else its task's) ``activation_channels`` per pixel, scaled by the
    model's width) + inference buffers of one batch."""
    bands = sum(m.band_count for m in scene.modalities)
    side, n_samples = _n_samples(tile, scene, stats)
    sample_bytes = side * side * (bands + 1) * 4
    shard = n_samples * sample_bytes / max(1, train.num_workers)
    spec = get_model(train.model)
    width = spec.defaults().get("width")
    scale = train.model_params.get("width", width) / width if width else 1.0
    channels = spec.activation_channels or get_task(spec.task).activation_channels
    activations = 2 * train.batch_size * side * side * channels * scale * 4
    return int(FRAMEWORK_BYTES + shard + activations + 4 * sample_bytes * train.batch_size)


def baseline_memory(config: BaselineJobConfig, scene: Scene, stats: AOIStats | None) -> int:
    """A baseline fitted on one worker: scikit-learn baseline + three float32 copies of the train rows (at most
    ``max_train_samples``; one feature per band, or per band and patch pixel with ``features="patch"``) + two
    prediction batches."""
    bands = sum(m.band_count for m in scene.modalities)
    tile = config.tile_job
    side = tile.sampling.patch_size if tile is not None and config.features == "patch" else 1
    available = _n_patches(tile.sampling.per_class if tile else None, scene, stats)
    rows = min(config.max_train_samples, available * (tile.split.fractions[0] if tile else 1.0))
    features = side * side * bands
    return int(BASELINE_BYTES + 3 * rows * features * 4 + 2 * config.batch_size * features * 4)


def estimate_memory_per_worker(config: Any, scene: Scene, stats: AOIStats | None) -> int | None:
    """The peak memory per worker of ``config`` by its kind's memory model (None: the kind declares none)."""
    from jobs.kinds import needs_of

    model = needs_of(config).memory
    return None if model is None else model(config, scene, stats)
