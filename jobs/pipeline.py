"""The job the GUI launches: tile an AOI, train a model on it, predict the AOI and evaluate on the test split.

One frozen config (``PipelineJobConfig``) describes it; its run goes through the phases ``tiling``, ``training``,
``inference`` and ``evaluation``, each reported as progress on the one run. The same config runs from the CLI:
``python -m jobs run pipeline.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from core.configs import AOIConfig, ClusterConfig, Frozen, SamplingConfig, SplitConfig, TileJobConfig, TilingConfig
from core.errors import ConfigError
from core.models import get_model
from core.tasks import get_task
from core.training.config import TrainJobConfig
from core.training.schemes.api import check_combination


def model_modalities(
    model: str, scene_modalities: Sequence[str], label_modality: str | None = None
) -> tuple[str, ...] | None:
    """The modalities a pipeline tiles for ``model``: None (all of the scene's) unless the model reads one modality
    of a multi-modal scene: its own (``two_stream_rgb`` on RGB + HSI -> ``("rgb",)``), or for a one-input model
    (``patch_fcn``) the scene's ``label_modality`` (default: the first of ``scene_modalities``).

    Raises:
        ConfigError: the model is not registered, or reads a modality the multi-modal scene does not have.
    """
    spec = get_model(model)
    if len(scene_modalities) <= 1 or (spec.modality is None and not spec.one_input):
        return None  # a single-modality scene feeds its only modality to any single-branch model
    wanted = spec.modality or label_modality or scene_modalities[0]
    if wanted not in scene_modalities:
        raise ConfigError(
            f"model {model!r} reads the {wanted!r} modality but the scene has {list(scene_modalities)}; "
            "choose a model for the scene's modalities (e.g. 'two_stream' for all of them)"
        )
    return (wanted,)


class PipelineJobConfig(Frozen):
    """Everything one GUI launch needs. ``model`` is a registered model (:func:`core.models.list_models`);
    ``tiling.tile_size`` is used by models of tile tasks, ``sampling.patch_size`` by patch ones."""

    kind: Literal["pipeline"] = "pipeline"
    scene: str
    aoi: AOIConfig = AOIConfig()
    model: str = "unet"
    model_params: dict[str, Any] = Field(default_factory=dict)
    scheme: str = "data_parallel"
    num_workers: int = Field(2, ge=1)
    epochs: int | None = Field(
        None,
        ge=1,
        description="passes over the training split; None = the step budget of the data (core.training.budget)",
    )
    max_steps: int | None = Field(None, ge=1, description="cap on the optimizer steps (quick runs, tests)")
    baseline: bool = Field(True, description="also fit the random forest on the same store and split, for comparison")
    batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    tiling: TilingConfig = TilingConfig(tile_size=64)
    sampling: SamplingConfig = SamplingConfig(patch_size=9, per_class=200)
    split: SplitConfig = SplitConfig()
    mp_split: Literal["baseline", "optimized"] = "baseline"  # model_parallel only
    train_options: dict[str, Any] = Field(
        default_factory=dict,
        description="further TrainJobConfig fields (optimizer, mixup_alpha, worker_speeds, "
        "warmup_epochs, lr_decay_at, patience, ...), validated by TrainJobConfig",
    )
    predict: bool = True
    seams: Literal["exact", "crop"] = "exact"  # dense prediction, as in core.configs.PredictJobConfig
    overlap: int | None = Field(
        None,
        ge=0,
        description="dense prediction: context px per tile side; None = the "
        "model's receptive-field radius (seams='exact' only)",
    )
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _check(self) -> PipelineJobConfig:
        get_model(self.model)  # ConfigError (a ValueError) naming the registered models
        if self.seams == "crop" and self.overlap is None:
            raise ValueError(
                "seams='crop' trades exact seams for speed with an overlap you choose; give overlap "
                "(e.g. 32), or use seams='exact' for an overlap of the model's receptive-field radius"
            )
        # the scheme's own checks (unknown scheme, workers it needs, options only it reads)
        check_combination(self.model, self.scheme, self.num_workers, self.train_options.get("worker_speeds"))
        return self

    @property
    def task(self) -> str:
        """The task of the model (:attr:`core.models.ModelSpec.task`)."""
        return get_model(self.model).task


def pipeline_parts(
    config: PipelineJobConfig,
    store_path: Path,
    scene_modalities: Sequence[str] = (),
    label_modality: str | None = None,
) -> tuple[TileJobConfig, TrainJobConfig]:
    """The tile and train configs a pipeline runs (also used by the GUI's pre-flight check).

    ``scene_modalities`` and ``label_modality``: the scene's modality names and its label grid's, so a
    single-modality model (``two_stream_rgb``, ``patch_fcn``) tiles only its modality of a multi-modal scene (see
    :func:`jobs.pipeline.model_modalities`).
    """
    tile = TileJobConfig(
        scene=config.scene,
        aoi=config.aoi,
        mode=get_task(config.task).store_mode,
        tiling=config.tiling,
        sampling=config.sampling,
        split=config.split,
        cluster=config.cluster,
        modalities=model_modalities(config.model, scene_modalities, label_modality),
    )
    train = TrainJobConfig(
        scene=config.scene,
        store=str(store_path),
        model=config.model,  # type: ignore[arg-type]
        model_params=config.model_params,
        scheme=config.scheme,  # type: ignore[arg-type]
        num_workers=config.num_workers,
        epochs=config.epochs,
        max_steps=config.max_steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        cluster=config.cluster,
        **{"log_every": 5, "mp_split": config.mp_split, **config.train_options},
    )
    return tile, train
