"""What a launch's census says, for people: the stated tile size and split in one line, and a table of the
samples (tiles or patches) and labelled pixels each split gets per class (the launch form and ``run --dry-run``)."""

from __future__ import annotations

from typing import Any

from core.configs import BaselineJobConfig
from core.data.scene import Scene
from core.sampling.splits import SPLITS
from core.tiling.census import SampleCensus
from jobs.pipeline import PipelineJobConfig
from jobs.settle import tile_job_of


def describe_census(config: PipelineJobConfig | BaselineJobConfig, census: SampleCensus, scene: Scene) -> str:
    """One line: the stated sample size, modality and split, and the samples of each split."""
    tile = tile_job_of(config, scene)
    size = (
        f"tiles of {tile.tiling.tile_size} px"
        if census.mode == "tiles"
        else f"patches of {tile.sampling.patch_size} px"
    )
    if tile.modalities:
        size += f" of the {', '.join(tile.modalities)} modality"
    split = tile.split
    how = (
        f"spatial split in blocks of {split.block_size} px, buffer {split.buffer} px, seed {split.seed}"
        if split.method == "spatial"
        else f"date split (test date {split.test_date})"
    )
    counts = ", ".join(f"{s}: {census.samples.get(s, 0):,} {census.mode}" for s in SPLITS)
    return f"{size}, {how}. {counts}"


def census_unit(census: SampleCensus) -> str:
    """What a class row of :func:`census_table` counts."""
    return "labelled px" if census.mode == "tiles" else "patches"


def census_table(census: SampleCensus, scene: Scene) -> list[dict[str, Any]]:
    """One row per class of the AOI (its :func:`census_unit` in each split), then the samples of each split."""
    names = {c.id: c.name for c in scene.classes}
    rows: list[dict[str, Any]] = [
        {"class": names.get(c, str(c)), **{s: census.labelled.get(s, {}).get(c, 0) for s in SPLITS}}
        for c in sorted(census.classes())
    ]
    return [*rows, {"class": f"{census.mode} (all classes)", **{s: census.samples.get(s, 0) for s in SPLITS}}]


def format_census_table(census: SampleCensus, scene: Scene) -> str:
    """:func:`census_table` as aligned text (the CLI's dry run)."""
    header = [f"class ({census_unit(census)})", *SPLITS]
    cells = [[str(r["class"]), *(f"{r[s]:,}" for s in SPLITS)] for r in census_table(census, scene)]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    return "\n".join(
        "  ".join([row[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True))])
        for row in [header, *cells]
    )
