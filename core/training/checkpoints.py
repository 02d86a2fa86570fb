"""Resumable training checkpoints: a model bundle plus the optimizer's variables and the training loop's state.

A checkpoint folder holds what :func:`core.models.bundle.save_bundle` writes (``model.keras``, ``meta.json``), the
optimizer variables in order as ``optimizer.npz`` (``arr_0``, ``arr_1``, ...) and the loop state as ``state.json``.
Only rank 0 writes them; :func:`restore_checkpoint` reads one back into a freshly built model and optimizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.models.bundle import ModelMeta, save_bundle

OPTIMIZER_FILE = "optimizer.npz"
STATE_FILE = "state.json"


def save_checkpoint(directory: Path, model: Any, optimizer: Any, meta: ModelMeta, state: dict[str, Any]) -> Path:
    """Write a resumable checkpoint: the model bundle plus optimizer variables (npz) and loop state (JSON)."""
    save_bundle(directory, model, meta)
    np.savez(directory / OPTIMIZER_FILE, *[np.asarray(v.numpy()) for v in optimizer.variables])
    (directory / STATE_FILE).write_text(json.dumps(state, indent=1))
    return directory


def copy_dir(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src``, copied to ``dst.tmp`` first so ``dst`` is never a partial copy."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def restore_checkpoint(directory: Path, model: Any, optimizer: Any) -> dict[str, Any]:
    """Load weights and optimizer variables of a checkpoint into ``model`` / ``optimizer``; returns its state."""
    model.load_weights(directory / "model.keras")
    with np.load(directory / OPTIMIZER_FILE) as z:
        arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
    if len(arrays) != len(optimizer.variables):
        raise ConfigError(
            f"checkpoint {directory} holds {len(arrays)} optimizer variables but this model needs "
            f"{len(optimizer.variables)}: resume with the same model and model_params"
        )
    for v, a in zip(optimizer.variables, arrays):
        v.assign(a)
    return dict(json.loads((directory / STATE_FILE).read_text()))


def latest_checkpoint(checkpoints: Path, needs: tuple[str, ...] = ()) -> tuple[Path, int] | None:
    """The complete checkpoint of the highest epoch under ``checkpoints`` (``last`` or ``epoch-NNN``) and its epoch.

    A checkpoint is complete when its bundle, optimizer variables and state (written last) are there and readable,
    plus the files named in ``needs`` (e.g. the raw weights of a weight average). A rank killed while writing leaves
    an incomplete folder (or none, between replacing ``last`` and renaming its copy); it is skipped. None: no
    complete checkpoint yet.
    """
    best: tuple[Path, int] | None = None
    for d in sorted(checkpoints.glob("epoch-*")) + [checkpoints / "last"]:
        if not all((d / f).exists() for f in ("model.keras", "meta.json", OPTIMIZER_FILE, STATE_FILE, *needs)):
            continue
        try:
            epoch = int(json.loads((d / STATE_FILE).read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if best is None or epoch >= best[1]:
            best = (d, epoch)
    return best
