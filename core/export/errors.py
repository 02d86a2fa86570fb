"""Domain exceptions of the export package (each also inherits the matching builtin, see :mod:`core.errors`)."""

from __future__ import annotations

from core.errors import WorkbenchError


class ExportError(WorkbenchError, ValueError):
    """A result or model cannot be exported as asked (unsupported model type, unreadable input, ...)."""


class UnsupportedModelError(ExportError):
    """A model bundle has no matching model type in the target tool (e.g. a multi-label model for Deepness)."""


class StacError(WorkbenchError, ValueError):
    """A STAC Item or Collection is malformed, incomplete or cannot be mapped to a scene."""


class RemoteHrefError(StacError):
    """A STAC asset points at a remote location (http, https, s3, ...); only local files are read."""
