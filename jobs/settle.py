"""Stating a launch in full before it starts: the derived tile size and split, and what each split will hold.

A pipeline, or a baseline or train job with a ``tile_job``, launched with the defaults leaves the tile size (``tiling`` not given), the split's block
size and buffer (``None``) and the split seed (not given) to be derived from the AOI. :func:`settle` derives them
(:mod:`core.sampling.split_defaults`, :func:`core.tiling.census.settle_split`), so the config that is stored with the
run states what ran, and counts the samples and labelled pixels of every split and class (labels only, no image
pixels) so that pre-flight can refuse what would fail, with a suggestion, before a run exists.
"""

from __future__ import annotations

from pathlib import Path

from core.configs import BaselineJobConfig, SplitConfig, TileJobConfig, TilingConfig
from core.data.geometry import resolve_aoi
from core.data.scene import Scene
from core.errors import ConfigError
from core.models import get_model
from core.sampling.split_defaults import largest_fitting_size
from core.tasks import get_task
from core.tiling.census import SampleCensus, settle_split
from core.training.config import TrainJobConfig
from jobs.pipeline import PipelineJobConfig, pipeline_parts

DEFAULT_TILE = 64
"""The tile side a pipeline uses when the AOI allows it and the user gave none."""
MIN_TILE = 16
"""The smallest tile side :func:`settle` tries for a small AOI."""

Launch = PipelineJobConfig | BaselineJobConfig | TrainJobConfig


def _tile_size(config: PipelineJobConfig, scene: Scene) -> int:
    """The tile side for a pipeline that gave none: 64 px, or the largest that fits 2 x 2 split blocks (the whole
    AOI for a date split), a multiple of the model's pooling alignment."""
    align = get_model(config.model).context_for(config.model_params).align
    side = min(resolve_aoi(config.aoi, scene).bbox.shape)
    fit = side if config.split.method == "date" else largest_fitting_size(side, "tiles")
    if fit is None or fit < align:
        raise ConfigError(
            f"the area of interest ({side} px across) is too small for any tile of model "
            f"{config.model!r} (multiples of {align} px); draw a larger area of interest"
        )
    return max(align, min(DEFAULT_TILE, fit) // align * align)


def _tile_trials(config: PipelineJobConfig, scene: Scene) -> list[PipelineJobConfig]:
    """The configs :func:`settle` tries: ``config`` itself when its tiles are given (or it makes none), else one
    per tile side, from :func:`_tile_size`'s down by halves to :data:`MIN_TILE` px (smaller tiles give a small AOI
    more split blocks, so every split and class gets samples), multiples of the model's alignment."""
    if not get_task(config.task).tiles or "tiling" in config.model_fields_set:
        return [config]
    align = get_model(config.model).context_for(config.model_params).align
    sizes = [_tile_size(config, scene)]
    while sizes[-1] // 2 // align * align >= max(align, MIN_TILE):
        sizes.append(sizes[-1] // 2 // align * align)
    return [config.model_copy(update={"tiling": TilingConfig(tile_size=t)}) for t in sizes]


def asked_splits(split: SplitConfig) -> tuple[float, float, float]:
    """Which splits must get samples (> 0): those with a fraction > 0; a date split's training and test dates, and
    its validation date only when it names one (without one, training runs without validation: no early stopping)."""
    if split.method == "date":
        return (1.0, 1.0 if split.val_date else 0.0, 1.0)
    return split.fractions


def tile_job_of(config: Launch, scene: Scene) -> TileJobConfig:
    """The tile job a launch runs first."""
    if not isinstance(config, PipelineJobConfig):
        if config.tile_job is None:
            raise ConfigError(f"the {config.kind} job names a store, not a tile job; nothing to settle")
        return config.tile_job
    return pipeline_parts(config, Path("store.zarr"), [m.name for m in scene.modalities], scene.label_modality)[0]


def settle(config: Launch, scene: Scene, needed: dict[str, int] | None = None) -> tuple[Launch, SampleCensus]:
    """``config`` with its tile size and split stated in full, and the census of its tile job.

    Tile sides (:func:`_tile_trials`) and, within each, split geometries and seeds
    (:func:`core.tiling.census.settle_split`) are tried in turn until every split gets ``needed`` samples (default
    1) and the training split holds every class; when none does, the first trial is returned (pre-flight then
    refuses it with what is missing).

    Raises:
        ConfigError: the AOI cannot hold the job (too small for any tile, or for 2 x 2 split blocks), with a fix.
    """
    names = {c.id: c.name for c in scene.classes}
    trials = _tile_trials(config, scene) if isinstance(config, PipelineJobConfig) else [config]
    first: tuple[Launch, SampleCensus] | None = None
    for trial in trials:
        tile, census = settle_split(tile_job_of(trial, scene), scene, class_names=names, needed=needed)
        settled = (
            trial.model_copy(update={"split": tile.split})
            if isinstance(trial, PipelineJobConfig)
            else trial.model_copy(update={"tile_job": tile})
        )
        if not census.problems(asked_splits(tile.split), names, needed):
            return settled, census
        first = first or (settled, census)
    assert first is not None
    return first
