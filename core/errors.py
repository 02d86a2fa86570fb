"""Domain exceptions.

Every exception also inherits the matching builtin so callers that only know Python's own
exceptions still catch them (rasterio's ``RasterioIOError(RasterioError, OSError)`` pattern).
Messages name the bad value, what was expected and how to fix it.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class RasterError(WorkbenchError, ValueError):
    """A file is not a usable raster (not a raster, truncated, no CRS, ...)."""


class RasterReadError(WorkbenchError, OSError):
    """A raster could not be opened or read."""


class GridMismatchError(WorkbenchError, ValueError):
    """Rasters that must share a pixel grid do not (size, CRS or transform differ)."""


class LabelError(WorkbenchError, ValueError):
    """A label raster or vector is invalid (off-grid, values outside the declared classes, ...)."""


class SceneNotFoundError(WorkbenchError, LookupError):
    """No registered scene has the given name or id."""


class SceneExistsError(WorkbenchError, ValueError):
    """A scene with that name is already registered."""


class SceneInUseError(WorkbenchError, ValueError):
    """A scene that runs refer to cannot be removed without saying what happens to them."""


class SceneFileChangedError(WorkbenchError, OSError):
    """A file changed or vanished after registration."""


class AOIError(WorkbenchError, ValueError):
    """An area of interest is empty, malformed or self-intersecting."""


class AOIOutsideSceneError(AOIError):
    """An area of interest does not overlap the scene at all."""


class ConfigError(WorkbenchError, ValueError):
    """A job configuration is invalid or inconsistent."""


class ClusterError(WorkbenchError, RuntimeError):
    """The Dask cluster cannot run the job as asked (too few workers, unreachable scheduler, ...)."""


class RunNotFoundError(WorkbenchError, LookupError):
    """No run has the given id."""


class JobFailedError(WorkbenchError, RuntimeError):
    """A distributed job failed on one of its workers or ranks."""


class WorkerLostError(JobFailedError):
    """A rank's worker process died or lost contact with the scheduler (no rank failed on its own input).

    ``rank`` and ``worker`` name the first rank lost; a training job may restart its ranks from the last checkpoint.
    """

    def __init__(self, message: str, rank: int | None = None, worker: str | None = None) -> None:
        super().__init__(message)
        self.rank, self.worker = rank, worker


class SchedulerLostError(ClusterError):
    """The driver lost its connection to the Dask scheduler (the scheduler or its host went away)."""


class JobCancelledError(WorkbenchError, RuntimeError):
    """A job was cancelled by the user."""


class OutputNotWritableError(WorkbenchError, PermissionError):
    """An output folder or file cannot be written (no permission, read-only file system)."""


class DiskFullError(WorkbenchError, OSError):
    """A write failed because the file system (or the user's quota) is full."""


class PathNotAllowedError(WorkbenchError, PermissionError):
    """A path typed by a user lies outside the configured data roots."""
