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
from core.training.budget import StepPlan, plan_steps
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


MIN_TRAIN_ITEMS = 5
"""A class needs at least this many labelled pixels (tiles) or patches in the training split to be learnt."""
STEP_OVERHEAD_S = 0.02
"""Rough fixed seconds per optimizer step (gradient allreduce, batch assembly) on 2 local workers."""
SECONDS_PER_ACTIVATION = 6e-8
"""Rough seconds per activation value (pixel x channel) of a training step, measured with unet on a 2-core machine."""


def planned_steps(config: PipelineJobConfig, census: SampleCensus) -> tuple[StepPlan, float]:
    """The step plan (:func:`core.training.budget.plan_steps`) a settled pipeline will train with, from the
    census's training samples, and a rough estimate of its training seconds on the cluster."""
    train = pipeline_parts(config, Path("store.zarr"))[1]
    n_train = int(census.samples.get("train", 0))
    global_batch = train.batch_size * train.num_workers
    per_pass = -(-max(n_train // train.num_workers, 1) // train.batch_size)
    plan = plan_steps(train, n_train, global_batch, per_pass)
    spec, task = get_model(config.model), get_task(config.task)
    side = config.tiling.tile_size if task.tiles else config.sampling.patch_size
    channels = spec.activation_channels or task.activation_channels
    step_s = STEP_OVERHEAD_S + SECONDS_PER_ACTIVATION * train.batch_size * side * side * channels
    return plan, plan.total_steps * step_s


def describe_plan(config: PipelineJobConfig, census: SampleCensus) -> str:
    """Pre-flight's line on training: planned steps, how they were sized, and the estimated time."""
    plan, seconds = planned_steps(config, census)
    how = (
        f"step budget of {census.samples.get('train', 0)} training samples"
        if plan.budget
        else f"{plan.epochs} epochs as set"
    )
    cap = f", capped by max_steps={config.max_steps}" if config.max_steps else ""
    return (
        f"training: {plan.total_steps} optimizer steps planned ({how}{cap}), validated every "
        f"{plan.steps_per_epoch} steps with early stopping after {plan.patience} rounds without a better "
        f"validation loss; about {seconds / 60:.1f} min on the cluster (rough)"
    )


def rare_classes(census: SampleCensus, names: dict[int, str]) -> str | None:
    """A pre-flight warning naming the classes with fewer than :data:`MIN_TRAIN_ITEMS` labelled items in the
    training split (but some), and what to do; None when every class has enough. A warning, not a refusal: the other
    classes are still learnt (houston_crop's class 3 has 3 patches in any split the form's defaults give)."""
    unit = "labelled pixels" if census.mode == "tiles" else "patches"
    rare = {c: n for c, n in census.labelled.get("train", {}).items() if 0 < n < MIN_TRAIN_ITEMS}
    if not rare:
        return None
    listed = ", ".join(f"{names.get(c, c)} (id {c}, {n} {unit})" for c, n in sorted(rare.items()))
    return (
        f"classes with fewer than {MIN_TRAIN_ITEMS} {unit} in the training split cannot be learnt (the map will hardly show them): {listed}. "
        "Draw a larger area of interest over them, merge them into a neighbouring class, or label more of them"
    )
