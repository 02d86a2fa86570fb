"""How many samples and labelled pixels each split of a tiling job will get, before any image pixel is read.

Pre-flight runs :func:`take_census` on the job's plan (:func:`core.tiling.job.plan_samples`): tiles mode reads the
label raster under each planned tile (labels only, inside the AOI), patches mode counts the planned patch centres
(the label scan the tiling job runs too). :meth:`SampleCensus.problems` says what would make the job fail or train
nothing useful: an empty split, or a class of the AOI that no training sample holds, each with a fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask

from core.configs import TileJobConfig
from core.data.geometry import resolve_aoi
from core.data.reader import LabelReader
from core.data.scene import Scene
from core.sampling.split_defaults import candidate_geometries
from core.sampling.splits import SPLITS
from core.tiling.job import TilePlan, grid_ratio, plan_samples, selected_acquisitions


@dataclass(frozen=True)
class SampleCensus:
    """Samples per split and labelled pixels per split and class.

    Attributes:
        mode: ``"tiles"`` (labelled = pixels of the tiles) or ``"patches"`` (labelled = patches, one per centre).
        samples: split -> planned samples (tiles of all dates, or patches).
        labelled: split -> class id -> labelled pixels (tiles) or patches (patches).
        split: the split as the job will run it (derived block size and buffer filled in).
        warnings: from resolving the AOI.
    """

    mode: str
    samples: dict[str, int]
    labelled: dict[str, dict[int, int]]
    split: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def classes(self) -> set[int]:
        return {c for per in self.labelled.values() for c, n in per.items() if n}

    def problems(
        self,
        fractions: tuple[float, float, float],
        class_names: dict[int, str] | None = None,
        needed: dict[str, int] | None = None,
    ) -> list[str]:
        """What would fail: splits asked for (fraction > 0) with fewer samples than ``needed`` (default 1), or with
        no labelled pixel, and classes of the AOI with no training sample."""
        names = class_names or {}
        unit = "tiles" if self.mode == "tiles" else "patches"
        out = []
        for split, frac in zip(SPLITS, fractions):
            want = (needed or {}).get(split, 1)
            if frac > 0 and self.samples.get(split, 0) < want:
                out.append(f"the {split} split gets {self.samples.get(split, 0)} {unit} (needs {want})")
            elif frac > 0 and not any(self.labelled.get(split, {}).values()):
                out.append(f"the {split} split's {self.samples.get(split, 0)} {unit} hold no labelled pixel")
        missing = sorted(self.classes() - {c for c, n in self.labelled.get("train", {}).items() if n})
        if missing:
            listed = ", ".join(f"{c} ({names[c]})" if c in names else str(c) for c in missing)
            out.append(
                f"class{'es' if len(missing) > 1 else ''} {listed} of the area of interest "
                f"{'have' if len(missing) > 1 else 'has'} no training {unit}"
            )
        return out


def take_census(config: TileJobConfig, scene: Scene, client: Any | None = None) -> SampleCensus:
    """Count what ``config`` would tile from ``scene`` (labels are read; image pixels are not)."""
    plan = plan_samples(config, scene, client)
    samples = {s: 0 for s in SPLITS}
    for x in plan.samples:
        samples[x.split] += 1
    if config.mode == "tiles":
        labelled = _tile_labels(plan, [a.labels for a in selected_acquisitions(config, scene)])
    else:
        labelled = _patch_labels(plan)
    return SampleCensus(config.mode, samples, labelled, plan.split_record, plan.warnings)


def _patch_labels(plan: TilePlan) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {s: {} for s in SPLITS}
    for x in plan.samples:
        out[x.split][x.label] = out[x.split].get(x.label, 0) + 1
    return out


def _tile_labels(plan: TilePlan, label_files: list[str | None]) -> dict[str, dict[int, int]]:
    """Labelled pixels per split and class under the planned tiles, inside the AOI (``label_files``: the label
    raster of each of the job's dates, in plan date-index order)."""
    out: dict[str, dict[int, int]] = {s: {} for s in SPLITS}
    by_date: dict[int, list[Any]] = {}
    for x in plan.samples:
        by_date.setdefault(x.date_index, []).append(x)
    for di, items in by_date.items():
        if label_files[di] is None:
            continue
        with LabelReader(label_files[di]) as reader:  # type: ignore[arg-type]
            for x in items:
                y = reader.read(x.window)
                if plan.aoi is not None:
                    w = x.window
                    y[
                        geometry_mask([plan.aoi], out_shape=w.shape, transform=Affine.translation(w.col_off, w.row_off))
                    ] = 0
                counts = np.bincount(y.ravel(), minlength=1)
                for cls in np.flatnonzero(counts[1:]) + 1:
                    out[x.split][int(cls)] = out[x.split].get(int(cls), 0) + int(counts[cls])
    return out


SEED_TRIES = 8
"""Split seeds tried when the user left the seed unset, to find a deal of blocks that trains on every class."""


def settle_split(
    config: TileJobConfig,
    scene: Scene,
    client: Any | None = None,
    class_names: dict[int, str] | None = None,
    needed: dict[str, int] | None = None,
) -> tuple[TileJobConfig, SampleCensus]:
    """``config`` with its split stated in full, and its census.

    A derived block size (none given) is tried at the default and at up to two smaller sizes
    (:func:`core.sampling.split_defaults.candidate_geometries`), and a seed the user did not set at
    :data:`SEED_TRIES` seeds, until every split gets ``needed`` samples (default 1) and the training blocks hold
    every class of the AOI; the first trial is kept when none does. A block size or seed the user set is kept as it is.
    """
    best: tuple[TileJobConfig, SampleCensus] | None = None
    for split in _trial_splits(config, scene):
        trial = config.model_copy(update={"split": split})
        census = take_census(trial, scene, client)
        settled = trial.model_copy(update={"split": _stated(trial.split, census)})
        if best is None:
            best = (settled, census)
        if not census.problems(split.fractions, class_names, needed):
            return settled, census
    assert best is not None
    return best


def _trial_splits(config: TileJobConfig, scene: Scene) -> list[Any]:
    """The split configs :func:`settle_split` tries, in order."""
    split = config.split
    if split.method != "spatial":
        return [split]
    seeds = [split.seed] if "seed" in split.model_fields_set else list(range(SEED_TRIES))
    sizes: list[tuple[int | None, int | None]] = [(split.block_size, split.buffer)]
    if split.block_size is None:
        label = scene.primary
        size = config.tiling.tile_size if config.mode == "tiles" else config.sampling.patch_size
        mods = [scene.modality(m) for m in (config.modalities or [m.name for m in scene.modalities])]
        shape = resolve_aoi(config.aoi, scene).bbox.shape
        sizes = [
            (g.block_size, g.buffer)
            for g in candidate_geometries(size, config.mode, shape, split.buffer, grid_ratio(label, mods))
        ]
    return [split.model_copy(update={"block_size": b, "buffer": f, "seed": s}) for b, f in sizes for s in seeds]


def _stated(split: Any, census: SampleCensus) -> Any:
    """The split config with the block size and buffer the census ran with (a spatial split's record)."""
    if census.split.get("method") != "spatial":
        return split
    return split.model_copy(
        update={
            "block_size": census.split["block_size"],
            "buffer": census.split["buffer"],
            "seed": census.split["seed"],
        }
    )
