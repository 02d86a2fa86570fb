"""Job configuration objects.

One frozen, validated pydantic model per job. A config holds no live objects (no client, session or model);
it round-trips through JSON, is stored with its run, and re-running a run means re-running its stored config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    def _stride_not_larger(self) -> "TilingConfig":
        if self.stride is not None and self.stride > self.tile_size:
            raise ValueError(f"stride {self.stride} is larger than tile_size {self.tile_size}: pixels between "
                             "windows would be skipped; use a stride <= tile_size")
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
            raise ValueError(f"patch_size {v} is even; use an odd size so the patch is centred on its pixel (e.g. {v + 1})")
        return v


class SplitConfig(Frozen):
    """Train / validation / test split, by space (disjoint blocks with a buffer) or by date."""

    method: Literal["spatial", "date"] = "spatial"
    block_size: int = Field(64, ge=4, description="side of a spatial block, in label-grid pixels")
    buffer: int | None = Field(None, ge=0, description="pixels left out around blocks; default = one patch/tile")
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    test_date: str | None = None
    val_date: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "SplitConfig":
        if abs(sum(self.fractions) - 1.0) > 1e-6 or min(self.fractions) < 0:
            raise ValueError(f"split fractions {self.fractions} must be >= 0 and sum to 1 (train, val, test)")
        if self.method == "date" and not self.test_date:
            raise ValueError("a date split needs test_date (the acquisition held out for testing)")
        return self


class ClusterConfig(Frozen):
    """Which Dask cluster to use: an existing scheduler address, or a local cluster of ``n_workers`` processes."""

    scheduler_address: str | None = None
    n_workers: int | None = Field(None, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"


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
