"""A trained model on disk: the Keras file plus everything needed to apply it to new imagery.

Layout of a model bundle folder (rank 0 writes one per epoch checkpoint and one final)::

    <dir>/model.keras     the Keras model (Keras 3 format)
    <dir>/meta.json       ModelMeta as JSON

Inputs of every model are channels-last float32 arrays, one per modality in ``meta.modalities`` order, normalised
with ``(x - mean) / std`` per band using ``meta.band_stats`` (statistics of the training split). Output index ``k``
means class id ``meta.class_ids[k]``. Dense models (``task == "dense"``) map (B, H, W, C) -> (B, H, W, K)
probabilities; patch models (``task == "patch"``) map patches centred on a pixel -> (B, K) for that pixel.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
META_FILE = "meta.json"
TUPLE_FIELDS = ("modalities", "class_ids", "class_names", "class_colors")
"""Meta fields stored as JSON lists and read back as tuples (every bundle kind)."""

T = TypeVar("T")
_CACHE: dict[tuple[str, str], tuple[int, Any]] = {}
_CACHE_LOCK = threading.Lock()


def read_meta_json(path: Path, cls: Callable[..., T], what: str) -> T:
    """A bundle's metadata dataclass ``cls`` from the JSON file ``path`` (the one reader of every bundle kind).

    Raises:
        FileNotFoundError: no such file (``what`` names the run kind that writes it).
    """
    if not path.exists():
        raise FileNotFoundError(f"no bundle metadata at {path}: is {path.parent} a bundle written by {what}?")
    return meta_from_json(path.read_text(), cls)


def meta_from_json(text: str, cls: Callable[..., T]) -> T:
    """``cls(**fields)`` of a metadata JSON text, list fields of :data:`TUPLE_FIELDS` as tuples."""
    d = json.loads(text)
    for k in TUPLE_FIELDS:
        if k in d:
            d[k] = tuple(d[k])
    return cls(**d)


def cached_load(directory: str | Path, marker: str, load: Callable[[Path], T]) -> T:
    """``load(directory)``, once per process, again when the file ``marker`` of the folder changes (mtime).

    The one bundle cache of the workers (deep model and baseline bundles alike).
    """
    path = Path(directory).resolve()
    mtime = (path / marker).stat().st_mtime_ns
    key = (str(path), marker)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None or hit[0] != mtime:
            _CACHE[key] = (mtime, load(path))
            log.info("loaded bundle %s", path)
        return _CACHE[key][1]


@dataclass(frozen=True)
class ModelMeta:
    model: str  # a registered model (core.models.get_model)
    task: str  # its task (core.tasks.get_task)
    modalities: tuple[str, ...]
    sample_size: dict[str, int]  # modality -> input H (= W) at that modality's resolution
    class_ids: tuple[int, ...]  # output index -> class id
    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]
    band_stats: dict[str, dict[str, list[float]]]  # modality -> {"mean": [...], "std": [...]}
    scene: str
    train_run_id: int | None = None
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def normalise(self, modality: str, x: np.ndarray) -> np.ndarray:
        """(…, C) array of raw values -> float32 normalised with the training statistics; NaN -> 0."""
        stats = self.band_stats[modality]
        mean = np.asarray(stats["mean"], dtype=np.float32)
        std = np.asarray(stats["std"], dtype=np.float32)
        out = (x.astype(np.float32) - mean) / np.where(std > 0, std, 1.0)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        return meta_from_json(text, cls)


def save_bundle(directory: str | Path, model: Any, meta: ModelMeta) -> Path:
    """Write ``model`` and ``meta`` into ``directory`` (created); returns the folder."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "model.tmp.keras"
    model.save(tmp)
    tmp.replace(d / MODEL_FILE)  # atomic: a reader never sees a half-written model
    (d / META_FILE).write_text(meta.to_json())
    return d


def load_meta(directory: str | Path) -> ModelMeta:
    """The :class:`ModelMeta` of a bundle folder."""
    return read_meta_json(Path(directory) / META_FILE, ModelMeta, "a train run")


def load_bundle(directory: str | Path, compile: bool = False) -> tuple[Any, ModelMeta]:
    """Load (keras model, meta) from a bundle folder. Custom layers must be registered with Keras serialisation."""
    import keras

    d = Path(directory)
    if not (d / MODEL_FILE).exists():
        raise FileNotFoundError(f"no model at {d / MODEL_FILE}: is {d} a model bundle written by a train run?")
    return keras.models.load_model(d / MODEL_FILE, compile=compile), load_meta(d)


def cached_bundle(bundle_dir: str | Path) -> tuple[Any, ModelMeta]:
    """(model, meta) of a bundle, loaded once per process and reloaded when ``model.keras`` changes."""
    return cached_load(bundle_dir, MODEL_FILE, load_bundle)
