"""Worker-side model calls for inference: one compiled TensorFlow function per loaded model.

:class:`ModelRunner` wraps a Keras model in one ``tf.function`` with an input signature of unknown batch, height
and width (traced once, whatever the tile or chunk size). Measured on this project's 2-core machine (U-Net width 8,
one 256 px tile, TensorFlow on 1 thread, CPU ms per call): ``predict_on_batch`` 16.7, the compiled function 16.5,
the same with the normalisation and argmax moved into the graph 19.8 (TensorFlow's element-wise ops on one thread
are slower than numpy's), a batch of 4 tiles 16.1 per tile. So the model call itself is the floor; normalisation
and argmax stay in numpy, and what the compiled function saves is Keras' per-call overhead.

:func:`cached_runner` gives the runner of a bundle from the worker's bundle cache
(:func:`core.models.bundle.cached_bundle`: keyed by path and content, kept across runs in a warm worker).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # core.models imports the window predictors of this package: bundles are imported when used
    from core.models.bundle import ModelMeta

_RUNNERS: OrderedDict[int, ModelRunner] = OrderedDict()
_LOCK = threading.Lock()


class ModelRunner:
    """A model, its meta and its compiled call (see the module docstring).

    Args:
        model: the Keras model (inputs in ``meta.modalities`` order, channels last).
        meta: the bundle's meta (class ids, band statistics).
    """

    def __init__(self, model: Any, meta: ModelMeta) -> None:
        self.model, self.meta = model, meta
        self._fn: Any = None
        self._dense: ModelRunner | None = None

    def _build(self) -> Any:
        import tensorflow as tf

        model = self.model
        spec = [tf.TensorSpec((None, None, None, t.shape[-1]), tf.float32) for t in model.inputs]
        if len(spec) == 1:
            return tf.function(lambda x: model(x, training=False), input_signature=spec)
        return tf.function(lambda *xs: model(list(xs), training=False), input_signature=spec)

    def probabilities(self, batches: Sequence[np.ndarray]) -> np.ndarray:
        """Model output for normalised inputs.

        Args:
            batches: per modality (``meta.modalities`` order), ``(B, H, W, C)`` float32 normalised tiles.

        Returns:
            The model's output as float32 numpy, e.g. ``(B, H, W, K)`` for a dense model.
        """
        if self._fn is None:
            self._fn = self._build()
        return np.asarray(self._fn(*[np.ascontiguousarray(b, dtype=np.float32) for b in batches]))

    def dense_twin(self) -> ModelRunner:
        """The runner of the model's densely evaluated twin (:attr:`core.models.ModelSpec.dense_twin`, e.g.
        :func:`core.models.patch_fcn.dense_model`): it maps a window ``P - 1`` px larger than its output to the class
        of every output pixel's patch.

        Raises:
            ValueError: the model has no dense twin.
        """
        from core.models import get_model

        if self._dense is None:
            twin = get_model(self.meta.model).dense_twin
            if twin is None:
                raise ValueError(f"model {self.meta.model!r} has no densely evaluated twin; predict it per patch")
            self._dense = ModelRunner(twin(self.model), self.meta)
        return self._dense


def cached_runner(bundle_dir: str | Path) -> ModelRunner:
    """The :class:`ModelRunner` of a bundle's cached model (one per loaded model, compiled once)."""
    from core.models.bundle import MAX_CACHED, cached_bundle

    model, meta = cached_bundle(bundle_dir)
    with _LOCK:
        runner = _RUNNERS.get(id(model))
        if runner is None or runner.model is not model:
            runner = _RUNNERS[id(model)] = ModelRunner(model, meta)
            while len(_RUNNERS) > MAX_CACHED:
                _RUNNERS.popitem(last=False)
        _RUNNERS.move_to_end(id(model))
        return runner
