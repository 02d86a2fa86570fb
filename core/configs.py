"""Job configuration objects.

One frozen, validated pydantic model per job. A config holds no live objects (no client, session or model);
it round-trips through JSON, is stored with its run, and re-running a run means re-running its stored config.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import ConfigError
from core.hpc_config import HPCClusterConfig


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AOIConfig(Frozen):
    """An area of interest: a GeoJSON Polygon/MultiPolygon (geometry, Feature or FeatureCollection of one feature).

    ``crs`` is the CRS of the coordinates (default EPSG:4326, what a web map gives). ``None`` geometry means
    the whole scene. For scenes that are not georeferenced, give ``crs="pixel"`` with (col, row) coordinates.
    """

    geometry: dict[str, Any] | None = None
    crs: str = "EPSG:4326"


class TilingConfig(Frozen):
    """Sliding-window tiling. Sizes in pixels of the label grid (the primary modality)."""

    tile_size: int = Field(256, ge=8, le=8192)
    stride: int | None = Field(None, ge=1, description="step between windows; default = tile_size (no overlap)")

    @model_validator(mode="after")
    def _stride_not_larger(self) -> TilingConfig:
        if self.stride is not None and self.stride > self.tile_size:
            raise ValueError(
                f"stride {self.stride} is larger than tile_size {self.tile_size}: pixels between "
                "windows would be skipped; use a stride <= tile_size"
            )
        return self

    @property
    def step(self) -> int:
        return self.stride or self.tile_size


class SamplingConfig(Frozen):
    """Patch sampling for per-pixel classifiers: patches centred on labelled pixels."""

    patch_size: int = Field(25, ge=1, le=512)
    per_class: int | None = Field(None, ge=1, description="N patches per class (balanced); None = all labelled pixels")
    seed: int = 0

    @field_validator("patch_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(
                f"patch_size {v} is even; use an odd size so the patch is centred on its pixel (e.g. {v + 1})"
            )
        return v


class SplitConfig(Frozen):
    """Train / validation / test split, by space (disjoint blocks with a buffer) or by date."""

    method: Literal["spatial", "date"] = "spatial"
    block_size: int | None = Field(
        None,
        ge=4,
        description="side of a spatial block, in label-grid pixels; None = derived from the sample size and the AOI",
    )
    buffer: int | None = Field(
        None,
        ge=0,
        description="pixels left out around blocks; default = one patch/tile "
        "(with a derived block size: one patch, half a tile)",
    )
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    test_date: str | None = None
    val_date: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if abs(sum(self.fractions) - 1.0) > 1e-6 or min(self.fractions) < 0:
            raise ValueError(f"split fractions {self.fractions} must be >= 0 and sum to 1 (train, val, test)")
        if self.method == "date" and not self.test_date:
            raise ValueError("a date split needs test_date (the acquisition held out for testing)")
        return self


class ClusterConfig(Frozen):
    """Which Dask cluster to use: an existing scheduler address, workers started as batch jobs (``hpc``: SLURM or
    PBS through dask-jobqueue, cancelled when the job ends), or a local cluster of ``n_workers`` processes."""

    scheduler_address: str | None = None
    n_workers: int | None = Field(None, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"
    hpc: dict[str, Any] | None = Field(
        None,
        description="HPCClusterConfig settings (core.hpc_config): submit the workers as batch jobs (docs/CLUSTERS.md)",
    )
    workers_timeout: float = Field(600.0, gt=0, description="seconds to wait for the hpc workers (queue included)")

    @field_validator("hpc")
    @classmethod
    def _hpc(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return None
        settings = HPCClusterConfig.from_dict(v)  # unknown settings and bad values refused by name
        if settings.n_workers < 1:
            raise ValueError(
                "hpc.n_jobs is 0: the job would wait for workers that are never submitted; set n_jobs >= 1"
            )
        return dict(settings.to_dict())

    @model_validator(mode="after")
    def _one_cluster(self) -> ClusterConfig:
        if self.hpc is not None and self.scheduler_address:
            raise ValueError(
                "give either scheduler_address (an existing cluster) or hpc (workers started as batch jobs), not both"
            )
        return self

    def hpc_settings(self) -> HPCClusterConfig | None:
        """The :class:`core.hpc_config.HPCClusterConfig` of ``hpc`` (None when not set)."""
        return HPCClusterConfig.from_dict(self.hpc) if self.hpc is not None else None


class TileJobConfig(Frozen):
    """Cut an AOI of a scene into tiles (dense models) and/or patches (per-pixel models) in an on-disk store."""

    kind: Literal["tile"] = "tile"
    scene: str
    aoi: AOIConfig = AOIConfig()
    mode: Literal["tiles", "patches"] = "tiles"
    tiling: TilingConfig = TilingConfig()
    sampling: SamplingConfig = SamplingConfig()
    split: SplitConfig = SplitConfig()
    dates: tuple[str, ...] | None = None  # acquisitions to use; None = all
    modalities: tuple[str, ...] | None = None  # None = all
    output: str | None = None  # store path; default <home>/stores/run-<id>.zarr
    cluster: ClusterConfig = ClusterConfig()


class PredictJobConfig(Frozen):
    """Apply a trained model bundle to an AOI of a scene; writes a class-map COG (and a confidence COG).

    Sizes are pixels of the label grid. ``tile_size`` None = a tile about six overlaps wide (at least the model's
    training sample size) for dense models, the predictor's block (64 px; 256 px for densely evaluated patch
    models) for per-pixel models.

    ``seams`` says what happens where tiles meet (dense models):

    - ``"exact"`` (default): ``overlap`` pixels of context are read on each side of a tile and cropped away, with
      ``overlap`` at least the model's receptive-field radius (None = exactly that radius): every output pixel
      sees the same input as in one whole-scene prediction, so the map has no seams.
    - ``"crop"``: the same cropping with a smaller ``overlap`` of your choice (required): less work per output pixel
      (a tile holds more core), at the price of slightly different classes near tile borders.
    """

    kind: Literal["predict"] = "predict"
    model: str  # model bundle folder (core.models.bundle)
    scene: str
    date: str | None = None  # acquisition to classify; None = the first one
    aoi: AOIConfig = AOIConfig()
    tile_size: int | None = Field(None, ge=8, le=8192)
    seams: Literal["exact", "crop"] = "exact"
    overlap: int | None = Field(
        None,
        ge=0,
        description="context pixels per tile side; None = the model's receptive-field radius (seams='exact' only)",
    )
    batch_size: int = Field(256, ge=1, description="patches per model call (patch models)")
    confidence: bool = True
    output: str | None = None  # COG path; default <home>/runs/run-<id>/prediction.tif
    resume_from: int | None = Field(
        None,
        ge=1,
        description="id of a predict run that died or was cancelled: finish "
        "its output, computing only the windows it had not",
    )
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _overlap_fits(self) -> PredictJobConfig:
        if self.seams == "crop" and self.overlap is None:
            raise ValueError(
                "seams='crop' trades exact seams for speed with an overlap you choose; give overlap "
                "(e.g. 32), or use seams='exact' for an overlap of the model's receptive-field radius"
            )
        if self.tile_size is not None and self.overlap is not None and 2 * self.overlap >= self.tile_size:
            raise ValueError(
                f"overlap {self.overlap} leaves no pixels of a {self.tile_size}-pixel tile (2 * overlap "
                f"must be < tile_size); use overlap <= {(self.tile_size - 1) // 2} or a larger tile"
            )
        return self


class EvaluateJobConfig(Frozen):
    """Score a classifier.

    ``method="model"``: a model bundle on a store's split (dense: every labelled pixel of the split's tiles; patch:
    the centre labels). ``"rf"`` / ``"knn"`` / ``"svm"``: a per-pixel baseline trained on the store's train split
    and scored on ``split``. ``"prediction"``: a class-map GeoTIFF against a label raster of the same grid,
    restricted to ``mask`` (an AOI) and to labelled pixels.
    """

    kind: Literal["evaluate"] = "evaluate"
    method: Literal["model", "prediction", "rf", "knn", "svm"] = "model"
    model: str | None = None  # bundle folder (method="model")
    store: str | None = None  # Zarr sample store (model / baselines)
    split: Literal["train", "val", "test"] = "test"
    prediction: str | None = None  # class-map GeoTIFF (method="prediction")
    labels: str | None = None  # label raster on the prediction's grid (method="prediction")
    mask: AOIConfig = AOIConfig()
    features: Literal["center", "patch"] = "center"  # baselines on patch stores: centre pixel or flattened patch
    max_train_samples: int = Field(50_000, ge=10)
    seed: int = 0

    @model_validator(mode="after")
    def _inputs_given(self) -> EvaluateJobConfig:
        need = {"model": ("model", "store"), "prediction": ("prediction", "labels")}.get(self.method, ("store",))
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(
                f"method={self.method!r} needs {', '.join(missing)}; got none (e.g. "
                f"{missing[0]}='/path/to/{missing[0]}')"
            )
        return self


class TrainJobSchema(Frozen):
    """Train a model on a tile store with one of the registered parallelism schemes (``scheme``): the fields.

    Jobs build :class:`core.training.config.TrainJobConfig`, this schema checked against the model and scheme
    registries (a layer above this module).

    ``batch_size`` is per worker; the learning rate is ``learning_rate * num_workers`` after a linear warm-up of
    ``warmup_epochs`` from ``learning_rate``, then multiplied by ``lr_decay_factor`` every ``lr_decay_epochs``
    (or, with ``epochs`` unset, a cosine over the step budget of :mod:`core.training.budget`).
    Training stops early when the validation loss has not improved for ``patience`` epochs (validation rounds of a
    budget-sized job); ``max_steps`` caps the optimizer steps. The database URL is not
    part of the config (it is where the run is stored, not what the run is).
    """

    kind: Literal["train"] = "train"
    scene: str
    store: str | None = None  # path of a tile store (written by a tile run)
    tile_job: TileJobConfig | None = None  # or the tile job that makes it
    model: str = "unet"  # a registered model (core.models.list_models())
    model_params: dict[str, Any] = Field(default_factory=dict)  # builder keywords: width, depth, dropout
    scheme: str = "single"  # a registered scheme (core.training.schemes.list_schemes())
    optimizer: Literal["adam", "sgd_nesterov"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd_nesterov only")
    lr_decay_at: tuple[float, ...] | None = Field(
        None,
        description="fractions of the epochs at which the rate is multiplied by lr_decay_factor "
        "(the ResNet recipe: 0.3, 0.6, 0.8 of 100 epochs); overrides lr_decay_epochs",
    )
    mixup_alpha: float = Field(0.0, ge=0, description="mixup Beta(alpha, alpha); 0 = off")
    label_fraction: float = Field(
        0.05,
        gt=0,
        le=1,
        description="multi-label targets: a class is present in a sample when it covers at least this fraction",
    )
    worker_speeds: tuple[float, ...] | None = Field(
        None, description="heterogeneous: relative speed of each rank (None = measured by a short calibration)"
    )
    calibration_steps: int = Field(5, ge=1, description="heterogeneous: steps timed per rank to measure speed")
    mp_split: Literal["baseline", "optimized"] = Field(
        "baseline",
        description="model_parallel: 'baseline' = one branch per rank; 'optimized' = the last conv "
        "block and flatten of both branches run on the fusion rank (less traffic)",
    )
    num_workers: int = Field(1, ge=1, description="Horovod ranks (one Dask worker process each)")
    epochs: int | None = Field(
        None,
        ge=1,
        description="passes over the training split; None = sized by the step budget of the data "
        "(core.training.budget: early stopping and the learning rate follow the budget's steps)",
    )
    max_steps: int | None = Field(
        None, ge=1, description="cap on the optimizer steps of the job, whatever epochs or the budget say"
    )
    batch_size: int = Field(8, ge=1, description="samples per worker per step")
    learning_rate: float = Field(1e-3, gt=0, description="base rate for one worker; scaled by num_workers")
    warmup_epochs: int = Field(1, ge=0)
    lr_decay_epochs: int | None = Field(None, ge=1)
    lr_decay_factor: float = Field(0.5, gt=0, le=1)
    patience: int = Field(5, ge=1)
    augment: bool = True
    random_windows: bool = Field(
        True,
        description="dense models: train on a random window inside each stored tile (3/4 of its side) at "
        "every step, instead of the whole tile",
    )
    class_weights: bool = Field(
        True,
        description="weigh the loss by inverse class frequency of the train split (capped), so rare classes are learnt",
    )
    ema_decay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="average the weights over training (Polyak / EMA, e.g. "
        "0.995); validation and the bundle use the average; 0 = off",
    )
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch (quick runs)")
    log_every: int = Field(10, ge=1, description="steps between per-rank loss / samples-per-second records")
    seed: int = 0
    resume_from: int | None = Field(None, ge=1, description="id of a train run whose last checkpoint to continue")
    max_restarts: int = Field(
        2,
        ge=0,
        description="automatic restarts from the last checkpoint when a rank's worker "
        "dies or loses contact (0 = fail at once)",
    )
    restart_wait_s: float = Field(
        120.0,
        gt=0,
        description="how long a restart waits for enough workers; after it, "
        "a scheme that can (data_parallel) goes on with fewer ranks",
    )
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _check(self) -> TrainJobSchema:
        if self.store is None and self.tile_job is None:
            raise ValueError("give the training data: store (path of a tile store) or tile_job (a tile job config)")
        return self


class BaselineJobConfig(Frozen):
    """Train a classical per-pixel baseline on a tile store, score it, and optionally map an AOI with it.

    ``method``: ``rf`` (random forest, 100 trees), ``knn`` (k = 5, Euclidean on standardised features) or ``svm``
    (RBF, one-vs-rest). ``features``: ``center`` (each modality's pixel under the labelled pixel) or ``patch``
    (vectorised patches of every modality, patch stores only). The estimator is fitted on the store's train split
    (a uniform subsample of at most ``max_train_samples`` rows) and scored with :mod:`core.tasks.metrics` on ``split``,
    the same rows a deep model is scored on. With ``predict`` the AOI (``aoi``, acquisition ``date``) is classified
    on the Dask workers in blocks of ``block_size`` label-grid pixels, ``batch_size`` pixels per estimator call,
    into the same class-map COG as a deep model's.
    """

    kind: Literal["baseline"] = "baseline"
    scene: str
    store: str | None = None  # path of a tile store (written by a tile run)
    tile_job: TileJobConfig | None = None  # or the tile job that makes it
    method: Literal["rf", "knn", "svm"] = "rf"
    features: Literal["center", "patch"] = "center"
    max_train_samples: int = Field(50_000, ge=10)
    split: Literal["val", "test"] = "test"
    seed: int = 0
    predict: bool = False
    aoi: AOIConfig = AOIConfig()
    date: str | None = None  # acquisition to classify; None = the first one
    block_size: int = Field(64, ge=8, le=4096, description="core block side of one prediction task, pixels")
    batch_size: int = Field(4096, ge=1, description="pixels per estimator call")
    confidence: bool = True
    output: str | None = None  # COG path; default <home>/runs/run-<id>/prediction.tif
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _check(self) -> BaselineJobConfig:
        if self.store is None and self.tile_job is None:
            raise ValueError("give the training data: store (path of a tile store) or tile_job (a tile job config)")
        if self.tile_job is not None and self.tile_job.scene != self.scene:
            raise ValueError(
                f"tile_job is for scene {self.tile_job.scene!r} but the baseline is for {self.scene!r}; "
                "use the same scene for both"
            )
        if self.features == "patch" and self.tile_job is not None and self.tile_job.mode != "patches":
            raise ValueError(
                "features='patch' vectorises patches but the tile_job has mode 'tiles'; use "
                "features='center' or tile_job mode 'patches'"
            )
        return self


FIRST_VERSION = 1
"""The schema version of every config stored before configs carried one, and of a kind that never changed."""

Upgrader = Callable[[dict[str, Any], int], dict[str, Any]]
"""``upgrader(data, version) -> data``: a stored config of schema ``version`` as version ``version + 1``."""


@dataclass(frozen=True)
class ConfigVersion:
    """Today's schema version of a job kind's config, and how a config stored at an older one becomes today's."""

    kind: str
    version: int
    upgrader: Upgrader | None = None


_VERSIONS: dict[str, ConfigVersion] = {}


def register_config(kind: str, version: int, upgrader: Upgrader | None = None) -> None:
    """Declare the schema ``version`` of ``kind``'s config (raster-vision's ``register_config(..., upgrader=)``).

    Bump the version whenever a field is renamed, removed or changes meaning, and extend ``upgrader``, which is
    called once per version from the stored one up (``upgrader(data, v)`` returns version ``v + 1``). A stored run
    records the version it was written at (``runs.config_version``); ``runs rerun`` upgrades it before validating.
    Call it in the module that defines the kind's config class.

    Raises:
        ValueError: a version below :data:`FIRST_VERSION`, or a later version without an upgrader.
    """
    if version < FIRST_VERSION or (version > FIRST_VERSION and upgrader is None):
        raise ValueError(
            f"config kind {kind!r} at schema version {version}: versions start at {FIRST_VERSION} and a later "
            "version needs an upgrader(data, version) that turns the previous version's fields into its own"
        )
    _VERSIONS[kind] = ConfigVersion(kind, version, upgrader)


def config_version(kind: str) -> int:
    """Today's schema version of ``kind``'s config (:data:`FIRST_VERSION` unless registered otherwise)."""
    known = _VERSIONS.get(kind)
    return known.version if known is not None else FIRST_VERSION


def upgrade_config(kind: str, data: dict[str, Any], version: int | None) -> dict[str, Any]:
    """A copy of ``data``, a ``kind`` config stored at schema ``version``, as today's config (None: today's).

    Raises:
        ConfigError: ``version`` is newer than this code's.
    """
    current = config_version(kind)
    out = dict(data)
    if version is None or version == current:
        return out
    if version > current:
        raise ConfigError(
            f"the {kind} config was stored at schema version {version}, newer than this workbench's {current}: "
            "re-run it with the workbench that stored it, or update this one"
        )
    upgrader = _VERSIONS[kind].upgrader
    for v in range(version, current):
        out = upgrader(out, v) if upgrader is not None else out
    return out


def load_json_file(path: str | Path, what: str = "config") -> Any:
    """The JSON value in ``path``; a missing, unreadable or malformed file raises ConfigError naming the file and,
    for a syntax error, the line and column.

    Args:
        path: the file.
        what: what the file is, for the message (``"config"``, ``"AOI"``, ``"classes"``, ``"scene spec"``).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file {str(p)!r} does not exist; check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{what} file {str(p)!r} cannot be read ({exc}); check its permissions and that it is a text (JSON) file"
        ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{what} file {str(p)!r} is not valid JSON: line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}; fix the file (a trailing comma, a missing quote or bracket?)"
        ) from exc
