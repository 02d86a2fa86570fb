"""Storing and loading registered scenes."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.data.scene import Scene
from core.errors import ConfigError, SceneExistsError, SceneInUseError, SceneNotFoundError
from db.engine import session_factory
from db.models import ClassRow, ModalityRow, RunRow, SceneFileRow, SceneRow, too_long_values


class SceneStore:
    """Scenes in one database."""

    def __init__(self, db_url: str | None = None) -> None:
        self._sessions = session_factory(db_url)

    def add(self, scene: Scene) -> Scene:
        """Store a validated scene; returns it with its database id. Nothing is written if the name is taken."""
        roles: dict[str, str] = {}
        for acq in scene.acquisitions:
            for mod, paths in acq.files.items():
                for p in paths:
                    roles[p] = f"image:{mod}:{acq.date or ''}"
            if acq.labels:
                roles[acq.labels] = f"labels:{acq.date or ''}"
        try:
            with self._sessions.begin() as s:
                if s.scalar(select(SceneRow.id).where(SceneRow.name == scene.name)) is not None:
                    raise SceneExistsError(
                        f"a scene named {scene.name!r} is already registered; choose another --name or remove it "
                        f"first with `python -m jobs scenes remove {scene.name}`"
                    )
                row = SceneRow(
                    name=scene.name,
                    georeferenced=scene.georeferenced,
                    crs_wkt=scene.crs_wkt,
                    footprint_wgs84=scene.footprint_wgs84,
                    spec={},
                    description=scene.description,
                )
                row.modalities = [
                    ModalityRow(
                        name=m.name,
                        width=m.width,
                        height=m.height,
                        band_count=m.band_count,
                        dtype=m.dtype,
                        resolution=m.resolution,
                    )
                    for m in scene.modalities
                ]
                row.classes = [ClassRow(class_id=c.id, name=c.name, color=c.color) for c in scene.classes]
                row.files = [
                    SceneFileRow(
                        path=f.path, role=roles.get(f.path, "other"), size=f.size, mtime_ns=f.mtime_ns, digest=f.digest
                    )
                    for f in scene.fingerprints
                ]
                too_long = [p for r in (row, *row.modalities, *row.classes, *row.files) for p in too_long_values(r)]
                if too_long:
                    raise ConfigError(
                        f"scene {scene.name!r} cannot be stored: "
                        + "; ".join(too_long)
                        + ". Shorten these names and register it again"
                    )
                s.add(row)
                s.flush()
                stored = Scene.from_dict({**scene.to_dict(), "id": row.id})
                row.spec = stored.to_dict()
                return stored
        except IntegrityError as exc:  # a concurrent registration of the same name
            raise SceneExistsError(f"a scene named {scene.name!r} is already registered") from exc

    def get(self, name_or_id: str | int) -> Scene:
        with self._sessions() as s:
            if isinstance(name_or_id, int) or str(name_or_id).isdigit():
                row = s.get(SceneRow, int(name_or_id))
            else:
                row = s.scalar(select(SceneRow).where(SceneRow.name == name_or_id))
            if row is None:
                names = list(s.scalars(select(SceneRow.name).order_by(SceneRow.name)))
                raise SceneNotFoundError(
                    f"no scene {name_or_id!r} is registered; registered scenes: {names or 'none'}. "
                    f"Register one with `python -m jobs scenes register ...`"
                )
            return Scene.from_dict(row.spec)

    def list(self) -> list[Scene]:
        with self._sessions() as s:
            return [Scene.from_dict(r.spec) for r in s.scalars(select(SceneRow).order_by(SceneRow.name))]

    def remove(self, name_or_id: str | int, runs: Literal["refuse", "keep", "delete"] = "refuse") -> int:
        """Remove a scene (its files are not touched); returns how many of its runs were kept or deleted.

        Args:
            runs: what happens to the scene's runs: ``"refuse"`` (raise if there are any), ``"keep"`` (their
                records stay, detached from the scene) or ``"delete"`` (removed with their events).

        Raises:
            SceneInUseError: runs refer to the scene and ``runs="refuse"``.
        """
        scene = self.get(name_or_id)
        with self._sessions.begin() as s:
            run_rows = list(s.scalars(select(RunRow).where(RunRow.scene_id == scene.id)))
            if run_rows and runs == "refuse":
                raise SceneInUseError(
                    f"scene {scene.name!r} has {len(run_rows)} run(s); remove it with "
                    f"--keep-runs to keep their records (detached from the scene) or --with-runs "
                    "to remove them too"
                )
            for run in run_rows:
                if runs == "keep":
                    run.scene_id = None
                else:
                    s.delete(run)
            s.flush()
            s.delete(s.get(SceneRow, scene.id))
        return len(run_rows)
