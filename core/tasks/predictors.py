"""How the bundles of a task (or of one model) map a scene: declared here, implemented by the inference layer.

Tasks and models sit below :mod:`core.inference` in the layer order (docs/ARCHITECTURE.md), yet each names how its
bundles are applied window by window. So a task or model declares a :class:`WindowPredictor` (what the driver plans
with: whether the model reads context around a block, the default block side), and the layer that holds the worker
code fills in the Dask tasks with :func:`implement_predictor` when it is imported (:mod:`core.inference.windows`
for the built-in predictors, :mod:`core.baselines.bundle` for the baselines'). The driver that submits the tasks
imports that layer, so by then every predictor it can meet is implemented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError

_IMPLEMENTATIONS: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]] = {}


@dataclass(frozen=True)
class WindowPredictor:
    """How the bundles of a task map a scene.

    Attributes:
        name: the key its implementation is registered under (:func:`implement_predictor`).
        reads_context: True: the model sees a ``tile_size`` read window with ``overlap`` context around each core
            block (dense models); False: it classifies every pixel of a core block on its own (per-pixel models).
        block: default core block side (label pixels) of a per-pixel predictor.
    """

    name: str
    reads_context: bool
    block: int = 64

    @property
    def window(self) -> Callable[..., Any]:
        """The Dask task ``task(bundle_dir, scene, date, read, core, batch_size, confidence) -> (core, classes,
        confidence)`` (:mod:`core.inference.windows`)."""
        return _implementation(self)[0]

    @property
    def chunk(self) -> Callable[..., Any] | None:
        """Optional Dask task answering for a chunk of neighbouring ``(read, core)`` windows at once (None: none)."""
        return _implementation(self)[1]


def implement_predictor(
    predictor: WindowPredictor, window: Callable[..., Any], chunk: Callable[..., Any] | None = None
) -> None:
    """Give ``predictor`` its Dask tasks (called by the layer that holds them, at import)."""
    _IMPLEMENTATIONS[predictor.name] = (window, chunk)


def _implementation(predictor: WindowPredictor) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    try:
        return _IMPLEMENTATIONS[predictor.name]
    except KeyError:
        raise ConfigError(
            f"window predictor {predictor.name!r} has no Dask tasks: import the module that implements it "
            f"(core.inference.windows for {sorted(BUILT_IN)}, core.baselines.bundle for 'baseline') before predicting"
        ) from None


DENSE = WindowPredictor("dense", reads_context=True)
"""Dense models: a read window with context around each core block, chunks of windows per Dask task."""
PER_PIXEL = WindowPredictor("per_pixel", reads_context=False)
"""Per-pixel (patch) models: every pixel of a 64 px core block classified from its own patch."""
DENSE_PATCH = WindowPredictor("dense_patch", reads_context=False, block=256)
"""Per-pixel models whose dense twin classifies a whole block at once (:mod:`core.models.patch_fcn`): blocks of
256 px (one model call each) instead of 64."""
BUILT_IN = {p.name: p for p in (DENSE, PER_PIXEL, DENSE_PATCH)}
