"""What can be launched: job kind -> (config class, executor). The CLI and the GUI both dispatch through here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from core.configs import TileJobConfig
from core.errors import ConfigError
from db.scenes import SceneStore
from jobs.runner import Executor, JobContext


def run_tile(config: TileJobConfig, ctx: JobContext) -> dict[str, Any]:
    """Tile an AOI of a registered scene into a sample store on the cluster."""
    from core.data.catalog import verify_files
    from core.tiling.job import run_tile_job

    scene = SceneStore(ctx.db_url).get(config.scene)
    verify_files(scene)
    store_path = Path(config.output) if config.output else ctx.settings.stores_dir / f"run-{ctx.run_id:05d}.zarr"
    info = run_tile_job(config, scene, ctx.client, store_path,
                        progress=lambda done, total: ctx.progress("tiling", done, total), cancelled=ctx.cancelled)
    return {
        "metrics": {"counts": info.counts, "class_counts": info.class_counts, "skipped_nodata": info.skipped_nodata},
        "artifacts": {"store": str(store_path)},
    }


@dataclass(frozen=True)
class JobKind:
    name: str
    config_class: type[BaseModel]
    executor: Executor
    help: str


def _kinds() -> dict[str, JobKind]:
    kinds = {"tile": JobKind("tile", TileJobConfig, run_tile, "tile an AOI into a sample store")}  # type: ignore[arg-type]
    try:  # engine parts of later issues register themselves when present
        from jobs import engine_kinds

        kinds.update(engine_kinds.KINDS)
    except ImportError:
        pass
    return kinds


def kinds() -> dict[str, JobKind]:
    return _kinds()


def parse_config(data: dict[str, Any] | str | Path, kind: str | None = None) -> BaseModel:
    """Validate a job config (dict, JSON text or JSON file path) into its config class, with a clear error."""
    source = "config"
    if isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
        path = Path(data)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a JSON job config")
        source = str(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {source!r} is not valid JSON: {exc}") from exc
    elif isinstance(data, str):
        data = json.loads(data)
    assert isinstance(data, dict)
    kind = kind or data.get("kind")
    all_kinds = kinds()
    if kind not in all_kinds:
        raise ConfigError(f"{source} has kind {kind!r}; expected one of {sorted(all_kinds)} (set \"kind\")")
    try:
        return all_kinds[kind].config_class.model_validate({**data, "kind": kind})
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{source} is not a valid {kind} config:\n" + "\n".join(lines)) from exc


def scene_id_of(config: BaseModel, db_url: str | None = None) -> int | None:
    name = getattr(config, "scene", None)
    if not name:
        return None
    return SceneStore(db_url).get(name).id
