"""The ledger of a prediction: every finished window kept beside the output, so a run that died can be resumed.

The driver writes each window's result (uint8 classes and confidence, before the AOI mask) to
``<output>.parts/r<row>_c<col>.npz`` as it arrives (written to a temporary name, then renamed: a part file is
whole or absent), next to ``ledger.json``, which holds the job's fingerprint (bundle and its file times, scene,
date, AOI box, window plan, confidence). A resumed prediction with the same fingerprint writes the finished
windows from their parts and computes only the others, so its output is the one an uninterrupted run writes. The
folder is removed once the COG is finished. A 512 x 512 window is at most 0.5 MiB of parts (compressed).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.geo.windows import PixelWindow
from core.writable import writes_to

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.json"


def bundle_stamp(bundle_dir: str | Path) -> dict[str, float]:
    """File name -> modification time of a bundle's files (a retrained bundle at the same path differs)."""
    return {p.name: p.stat().st_mtime for p in sorted(Path(bundle_dir).iterdir()) if p.is_file()}


class WindowLedger:
    """Finished windows of the prediction written to ``out`` (see the module docstring)."""

    def __init__(self, out: Path, fingerprint: dict[str, Any]) -> None:
        self.out, self.fingerprint = out, json.loads(json.dumps(fingerprint))  # as it reads back from JSON
        self.dir = out.with_name(out.name + ".parts")

    def start(self, resume: bool) -> set[tuple[int, int]]:
        """Begin recording; returns the ``(row_off, col_off)`` of the windows already finished (empty when new).

        Raises:
            ConfigError: ``resume`` without a ledger beside ``out``, or with the ledger of another job.
        """
        if resume:
            path = self.dir / LEDGER_FILE
            if not path.exists():
                raise ConfigError(
                    f"nothing to resume at {self.out}: no ledger {path} (the run finished, or never "
                    "started, or wrote elsewhere); run the prediction without resuming"
                )
            stored = json.loads(path.read_text())
            changed = sorted(k for k in {*stored, *self.fingerprint} if stored.get(k) != self.fingerprint.get(k))
            if changed:
                raise ConfigError(
                    f"the unfinished prediction at {self.out} was made with other settings ({changed} "
                    "differ); resume with the same model, scene, date, AOI and window settings, or "
                    "run it afresh without resuming"
                )
            parts = [p.stem.split("_") for p in self.dir.glob("r*_c*.npz") if not p.name.endswith(".tmp.npz")]
            return {(int(r[1:]), int(c[1:])) for r, c in parts}
        with writes_to(self.dir, "the prediction's ledger"):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            (self.dir / LEDGER_FILE).write_text(json.dumps(self.fingerprint, indent=1))
        return set()

    def _part(self, core: PixelWindow) -> Path:
        return self.dir / f"r{core.row_off}_c{core.col_off}.npz"

    def record(self, core: PixelWindow, classes: np.ndarray, conf: np.ndarray | None) -> None:
        """Keep one finished window (before it is masked and written to the output)."""
        part = self._part(core)
        tmp = part.with_name(part.stem + ".tmp.npz")
        arrays = {"classes": classes} if conf is None else {"classes": classes, "conf": conf}
        with writes_to(tmp, "the prediction's ledger"):
            np.savez_compressed(tmp, **arrays)
            tmp.replace(part)

    def load(self, core: PixelWindow) -> tuple[np.ndarray, np.ndarray | None]:
        """The classes and confidence of a finished window."""
        with np.load(self._part(core)) as z:
            return z["classes"], (z["conf"] if "conf" in z.files else None)

    def remove(self) -> None:
        """The output is complete: the parts are no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)
