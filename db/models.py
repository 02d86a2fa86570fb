"""SQLAlchemy 2.0 typed models of the run-tracking database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def too_long_values(row: Base) -> list[str]:
    """Text values of ``row`` longer than their ``String(n)`` column allows, described for an error message.

    SQLite stores any length; PostgreSQL refuses the whole transaction ("value too long for type character
    varying(n)"). Checking first gives both backends the same behaviour and a message that names the field.
    """
    problems = []
    for col in sa_inspect(type(row)).columns:
        limit = getattr(col.type, "length", None)
        value = getattr(row, col.key, None)
        if isinstance(col.type, String) and limit and isinstance(value, str) and len(value) > limit:
            problems.append(
                f"{row.__tablename__}.{col.key} is {len(value)} characters long, at most {limit} fit: {value[:40]!r}..."
            )
    return problems


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class SceneRow(Base):
    __tablename__ = "scenes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    georeferenced: Mapped[bool] = mapped_column(Boolean)
    crs_wkt: Mapped[str | None] = mapped_column(Text, nullable=True)
    footprint_wgs84: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # core.data.scene.Scene.to_dict()
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    modalities: Mapped[list[ModalityRow]] = relationship(back_populates="scene", cascade="all, delete-orphan")
    classes: Mapped[list[ClassRow]] = relationship(back_populates="scene", cascade="all, delete-orphan")
    files: Mapped[list[SceneFileRow]] = relationship(back_populates="scene", cascade="all, delete-orphan")


class ModalityRow(Base):
    __tablename__ = "scene_modalities"
    __table_args__ = (UniqueConstraint("scene_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scenes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    band_count: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(32))
    resolution: Mapped[float] = mapped_column(Float)
    scene: Mapped[SceneRow] = relationship(back_populates="modalities")


class ClassRow(Base):
    __tablename__ = "scene_classes"
    __table_args__ = (UniqueConstraint("scene_id", "class_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scenes.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    color: Mapped[str] = mapped_column(String(7))
    scene: Mapped[SceneRow] = relationship(back_populates="classes")


class SceneFileRow(Base):
    __tablename__ = "scene_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scenes.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(64))  # "image:<modality>:<date>" or "labels:<date>"
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    scene: Mapped[SceneRow] = relationship(back_populates="files")


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)  # tile, train, predict, evaluate, ...
    scene_id: Mapped[int | None] = mapped_column(ForeignKey("scenes.id"), nullable=True, index=True)
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the job's config object, as JSON
    # the schema version the config was stored at (core.configs.config_version; rows from before versions: 1)
    config_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cluster: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    artifacts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    events: Mapped[list[RunEventRow]] = relationship(back_populates="run", cascade="all, delete-orphan")
    worker_stats: Mapped[list[WorkerStatRow]] = relationship(back_populates="run", cascade="all, delete-orphan")


class RunEventRow(Base):
    __tablename__ = "run_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # progress, epoch, step, log, warning
    phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run: Mapped[RunRow] = relationship(back_populates="events")


class WorkerStatRow(Base):
    __tablename__ = "worker_stats"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    worker: Mapped[str] = mapped_column(String(255))
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_recv: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    peak_mem_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run: Mapped[RunRow] = relationship(back_populates="worker_stats")
