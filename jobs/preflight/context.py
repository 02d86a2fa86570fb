"""Pre-flight's statement of what a dense prediction spends on context (:func:`core.inference.plan.context_check`).

A tile of ``tile`` px keeps a core of ``tile - 2 x overlap`` px: the rest is context the model computes and the map
crops. :func:`context_share` is pre-flight's check (form, CLI ``run`` and ``--dry-run``, runner) for a predict job and for
the prediction of a pipeline (:func:`pipeline_context`), with a warning above
:data:`core.inference.plan.CONTEXT_WARN_SHARE` (a 256 px tile with exact seams, overlap 107 px, spends 99 % on
context and ran 15x slower than crop seams at 32 px, without a word).
"""

from __future__ import annotations

from typing import cast

from core.configs import PredictJobConfig
from core.errors import ConfigError
from core.inference.plan import context_check, crop_tile, default_tile
from core.models import get_model
from core.tasks import get_task
from jobs.pipeline import PipelineJobConfig
from jobs.preflight.report import Check, Level
from jobs.preflight.subject import Subject


def context_share(s: Subject) -> list[Check]:
    """Pre-flight's check: what a predict job's tiles, or the prediction a pipeline makes after training, spend on
    context (over the AOI measured by the ``aoi`` check, else the whole scene)."""
    if isinstance(s.config, PredictJobConfig):
        from core.inference.predict import prediction_context
        from db.scenes import SceneStore

        c = s.config
        try:
            scene = s.scene or SceneStore(s.db_url).get(c.scene)
            found = prediction_context(c.model, scene, c.aoi, c.tile_size, c.overlap, c.seams)
        except ConfigError as exc:  # the bundle, seams or overlap the job itself would refuse
            return [Check("error", str(exc))]
    elif isinstance(s.config, PipelineJobConfig) and s.scene is not None:
        shape = s.stats.bbox_shape if s.stats is not None else (s.scene.primary.height, s.scene.primary.width)
        found = pipeline_context(s.config, max(shape))
    else:
        return []
    return [Check(cast(Level, found[0]), found[1])] if found else []


def pipeline_context(config: PipelineJobConfig, aoi_side: int) -> tuple[str, str] | None:
    """``(level, message)`` for the prediction a pipeline makes after training (the tile rule of
    :func:`jobs.engine_kinds.prediction_tiling`); None when it maps per pixel or makes no map.

    Args:
        aoi_side: the longer side of the AOI's bounding box (label pixels).
    """
    spec = get_model(config.model)
    predictor = spec.predictor or get_task(config.task).predictor
    if not config.predict or predictor is None or not predictor.reads_context:
        return None
    context = spec.context_for(config.model_params)
    overlap = context.radius if config.overlap is None else config.overlap
    side = config.tiling.tile_size
    if config.seams == "exact":
        overlap = max(overlap, context.radius)
        return context_check(default_tile(side, overlap, context.align, True, aoi_side), overlap, context.align, None)
    return context_check(crop_tile(side, overlap, context.align), overlap, context.align, None)


def mapping_note(model: str) -> str | None:
    """How a per-pixel model maps a scene, for the launch form's model list: ``"maps densely"`` (its dense twin
    classifies a whole block per model call, e.g. ``patch_fcn``) or ``"maps patch by patch, slow"`` (one model
    input per pixel: ~0.04 Mpx/s for ``patch_cnn`` on 2 cores); None for dense, multi-label and unknown models."""
    from core.models import list_models

    if model not in list_models():
        return None
    spec = get_model(model)
    predictor = spec.predictor or get_task(spec.task).predictor
    if predictor is None or predictor.reads_context:
        return None
    return "maps densely" if spec.dense_twin is not None else "maps patch by patch, slow"
