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

import hashlib
import json
import logging
import threading
from collections import OrderedDict
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
_CACHE: dict[tuple[str, str], tuple[tuple[int, int, int], str]] = {}
_BY_CONTENT: OrderedDict[tuple[str, str], Any] = OrderedDict()
MAX_CACHED = 8
"""Bundle contents a process keeps loaded (least recently used dropped first)."""
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


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


def content_digest(path: Path) -> str:
    """BLAKE2b digest (hex, 16 bytes) of the files of a bundle folder (names and contents, sorted by name)."""
    h = hashlib.blake2b(digest_size=16)
    for f in sorted(p for p in path.iterdir() if p.is_file() and ".tmp" not in p.name):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def cached_load(directory: str | Path, marker: str, load: Callable[[Path], T]) -> T:
    """``load(directory)``, once per process for each bundle content; kept while the process lives.

    The one bundle cache of the workers (deep model and baseline bundles alike), keyed by path and content: a
    ``stat`` of the file ``marker`` per call (mtime, size, inode); when that changes, a digest of the folder's
    files (:func:`content_digest`); a bundle whose content is already loaded (copied to another path, or written
    again unchanged) is not loaded again. A warm worker keeps its models across runs.
    """
    path = Path(directory).resolve()
    key, stamp = (str(path), marker), _stamp(path / marker)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stamp and (marker, hit[1]) in _BY_CONTENT:
            _BY_CONTENT.move_to_end((marker, hit[1]))
            return _BY_CONTENT[(marker, hit[1])]
        digest = content_digest(path)
        _CACHE[key] = (stamp, digest)
        if (marker, digest) not in _BY_CONTENT:
            _BY_CONTENT[(marker, digest)] = load(path)
            log.info("loaded bundle %s (content %s)", path, digest)
            while len(_BY_CONTENT) > MAX_CACHED:
                _BY_CONTENT.popitem(last=False)
        _BY_CONTENT.move_to_end((marker, digest))
        return _BY_CONTENT[(marker, digest)]


def cache_info() -> dict[str, str]:
    """This process's bundle cache: resolved bundle path -> content digest."""
    with _CACHE_LOCK:
        return {p: d for (p, _), (_, d) in _CACHE.items()}


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
    def from_json(cls, text: str) -> ModelMeta:
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
    """(model, meta) of a bundle, loaded once per process per content (:func:`cached_load`)."""
    return cached_load(bundle_dir, MODEL_FILE, load_bundle)


@dataclass(frozen=True)
class BundleFormat:
    """A bundle that is not a Keras model bundle (the classical baselines'), as the inference driver needs it.

    The layer that writes such bundles sits above inference (:mod:`core.baselines.bundle`), so it registers its
    format here (:func:`register_bundle_format`) when imported, and :func:`core.inference.predict.open_bundle` asks
    :func:`bundle_format` instead of importing it.

    Attributes:
        name: the format's name (``"baseline"``).
        marker: a file whose presence in the folder marks the format.
        load_meta: ``load_meta(directory) -> meta`` (class ids, names, colours, modalities like :class:`ModelMeta`).
        predictor: how its bundles map a scene (:class:`core.tasks.predictors.WindowPredictor`).
    """

    name: str
    marker: str
    load_meta: Callable[[str | Path], Any]
    predictor: Any


_FORMATS: dict[str, BundleFormat] = {}


def register_bundle_format(fmt: BundleFormat) -> None:
    """Make bundles of ``fmt`` known to prediction (called by the module that writes them, at import)."""
    _FORMATS[fmt.name] = fmt


def bundle_format(directory: str | Path) -> BundleFormat | None:
    """The registered format of the bundle in ``directory``, or None for a Keras model bundle."""
    return next((f for f in _FORMATS.values() if (Path(directory) / f.marker).exists()), None)
