"""Errors of the accuracy-assessment / area-estimation engine.

They extend the workbench's domain errors (``core.errors``) so callers catching those, or the matching builtin,
still catch these.
"""

from __future__ import annotations

from core.errors import GridMismatchError, LabelError, WorkbenchError


class SampleMismatchError(GridMismatchError):
    """A sample (or its labels) was drawn from another map than the one being assessed."""


class ReferenceLabelError(LabelError):
    """Reference labels for a sample are invalid (unknown or duplicate ids, classes outside the scene's, ...)."""


class InsufficientSampleError(WorkbenchError, ValueError):
    """The reference sample cannot support the estimator (a mapped stratum without or with one reference point)."""
