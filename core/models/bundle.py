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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelMeta:
    model: str  # "unet", "patch_cnn", ...
    task: str  # "dense" or "patch"
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
        d = json.loads(text)
        for k in ("modalities", "class_ids", "class_names", "class_colors"):
            d[k] = tuple(d[k])
        return cls(**d)


def save_bundle(directory: str | Path, model: Any, meta: ModelMeta) -> Path:
    """Write ``model`` and ``meta`` into ``directory`` (created); returns the folder."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "model.tmp.keras"
    model.save(tmp)
    tmp.replace(d / "model.keras")  # atomic: a reader never sees a half-written model
    (d / "meta.json").write_text(meta.to_json())
    return d


def load_meta(directory: str | Path) -> ModelMeta:
    return ModelMeta.from_json((Path(directory) / "meta.json").read_text())


def load_bundle(directory: str | Path, compile: bool = False) -> tuple[Any, ModelMeta]:
    """Load (keras model, meta) from a bundle folder. Custom layers must be registered with Keras serialisation."""
    import keras

    d = Path(directory)
    if not (d / "model.keras").exists():
        from core.errors import WorkbenchError

        raise FileNotFoundError(f"no model at {d / 'model.keras'}: is {d} a model bundle written by a train run?")
    return keras.models.load_model(d / "model.keras", compile=compile), load_meta(d)
