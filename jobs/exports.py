"""Taking results to other tools: a prediction as polygons (``vectorize``), a model for QGIS Deepness
(``export_onnx``). Both name a run by its id and write into their own run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from core.configs import Frozen
from core.errors import ConfigError
from core.export.onnx_export import export_onnx
from core.export.vectorize import vectorize
from db.scenes import SceneStore
from jobs.assess import prediction_of, run_of
from jobs.kinds import JobKind, register_kind
from jobs.runner import JobContext


class VectorizeJobConfig(Frozen):
    """Polygons of run ``prediction_run``'s map: regions under ``min_mapping_unit`` (``mmu_unit`` pixels or
    hectares) merged into neighbours until no polygon is below it (islands in nodata excepted: ``mmu_unmerged``),
    optionally simplified (``simplify`` in map units, topology kept)."""

    kind: Literal["vectorize"] = "vectorize"
    prediction_run: int = Field(ge=1)
    min_mapping_unit: float = Field(0, ge=0)
    mmu_unit: Literal["px", "ha"] = "px"
    simplify: float = Field(0.0, ge=0)


class ExportOnnxJobConfig(Frozen):
    """The model bundle of train / pipeline run ``model_run`` as an ONNX model with QGIS Deepness metadata.

    ``tile_size`` and ``overlap`` (context px per tile side) are declared to Deepness; by default the overlap is the
    model's receptive-field radius and the tile the one with the least computation per pixel, so Deepness' map
    equals the run's (:func:`core.export.onnx_export.deepness_tiling`). A smaller overlap is faster and leaves seams.
    """

    kind: Literal["export_onnx"] = "export_onnx"
    model_run: int = Field(ge=1)
    tile_size: int | None = Field(None, ge=8, le=4096)
    overlap: int | None = Field(None, ge=0, le=2048)


def run_vectorize(config: VectorizeJobConfig, ctx: JobContext) -> dict[str, Any]:
    """Polygonise the map into a GeoPackage (map CRS) and a GeoJSON (EPSG:4326) in this run's folder."""
    row, prediction = prediction_of(ctx, config.prediction_run)
    out = ctx.settings.run_dir(ctx.run_id)
    result = vectorize(
        prediction,
        out / "polygons.gpkg",
        out / "polygons.geojson",
        confidence=(row.artifacts or {}).get("confidence"),
        min_mapping_unit=config.min_mapping_unit,
        mmu_unit=config.mmu_unit,
        simplify=config.simplify,
        progress=ctx.progress,
    )
    metrics = {
        "polygons": result.polygons,
        "mmu_pixels": result.mmu_pixels,
        "mmu_unmerged": result.mmu_unmerged,
        "mmu_passes": result.mmu_passes,
        "vectorize_seconds": result.seconds,
        "class_pixels": {str(k): v for k, v in result.class_pixels.items()},
        "class_area_ha": {str(k): v for k, v in result.class_area_ha.items()},
    }
    return {"metrics": metrics, "artifacts": {"gpkg": str(result.gpkg_path), "geojson": str(result.geojson_path)}}


def run_export_onnx(config: ExportOnnxJobConfig, ctx: JobContext) -> dict[str, Any]:
    """Convert the run's final model bundle; the ``.onnx`` file is this run's artifact."""
    row = run_of(ctx, config.model_run, "model")
    bundle = (row.artifacts or {}).get("model")
    if not bundle or not Path(bundle, "model.keras").exists():
        raise ConfigError(
            f"run {config.model_run} ({row.kind}, {row.status}) has no trained model; give the id of "
            "a train or pipeline run that finished"
        )
    scene = SceneStore(ctx.db_url).get((row.config or {}).get("scene", ""))
    resolution = scene.primary.resolution if scene.georeferenced else None
    out = ctx.settings.run_dir(ctx.run_id) / f"run-{config.model_run}.onnx"
    result = export_onnx(
        bundle,
        out,
        tile_size=config.tile_size,
        overlap_px=config.overlap,
        resolution_m=resolution,
        progress=ctx.progress,
    )
    tiling = result.tiling
    return {
        "metrics": {
            "tile_size": result.tile_size,
            "bands": result.bands,
            "tiles_overlap_percent": tiling.percent,
            "context_px": tiling.context,
            "receptive_field_px": tiling.radius,
            "seams": "exact" if tiling.exact else "crop",
            "context_share": round(tiling.context_share, 3),
            "deepness": result.metadata,
        },
        "artifacts": {"onnx": str(result.path)},
    }


for _kind in (
    JobKind(
        "vectorize",
        VectorizeJobConfig,
        run_vectorize,  # type: ignore[arg-type]
        "polygons of a prediction run's map (GeoPackage + GeoJSON)",
    ),
    JobKind(
        "export_onnx",
        ExportOnnxJobConfig,
        run_export_onnx,  # type: ignore[arg-type]
        "a trained model as ONNX for QGIS Deepness",
    ),
):
    register_kind(_kind)
