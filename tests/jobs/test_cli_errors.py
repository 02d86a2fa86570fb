"""Every CLI verb with bad inputs: a one-line message saying what was wrong, a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli import main


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _cases(tmp: Path) -> list[tuple[list[str], str]]:
    bad_json = _write(tmp / "bad.json", '{"kind": "pipeline",\n "scene": "x",}')
    a_list = _write(tmp / "list.json", "[1, 2]")
    unknown_kind = _write(tmp / "kind.json", json.dumps({"kind": "paint", "scene": "x"}))
    bad_field = _write(tmp / "field.json", json.dumps({"kind": "pipeline", "scene": "x", "epochs": 0}))
    bad_model = _write(tmp / "model.json", json.dumps({"kind": "train", "scene": "x", "store": "s", "model": "vgg"}))
    return [
        (["run", str(tmp / "missing.json")], "does not exist"),
        (["run", bad_json], "line 2, column"),
        (["run", a_list], "not an object"),
        (["run", unknown_kind], "kind 'paint'"),
        (["run", bad_field], "epochs"),
        (["run", bad_model], "vgg"),
        (["train", bad_json], "not valid JSON"),
        (["tile", "--scene", "nowhere"], "no scene 'nowhere'"),
        (["tile", "--scene", "nowhere", "--aoi", bad_json], "AOI file"),
        (["scenes", "show", "nowhere"], "no scene 'nowhere'"),
        (["scenes", "remove", "nowhere"], "no scene 'nowhere'"),
        (["scenes", "register", "--name", "s", "--image", str(tmp / "none.tif")], "none.tif"),
        (["scenes", "register", "--spec", bad_json], "scene spec file"),
        (["scenes", "register", "--name", "s", "--image", bad_json, "--classes", bad_json], "classes file"),
        (["scenes", "register", "--stac", str(tmp / "item.json")], "item.json"),
        (["runs", "show", "9999"], "run 9999 does not exist"),
        (["runs", "rerun", "9999"], "run 9999 does not exist"),
        (["runs", "cancel", "9999"], "run 9999 does not exist"),
        (["sample", "9999", "--per-class", "5"], "run 9999 does not exist"),
        (["assess", "9999", "1", "--scene-labels"], "run 9999 does not exist"),
        (["vectorize", "9999"], "run 9999 does not exist"),
        (["export-onnx", "9999"], "run 9999 does not exist"),
        (["convert", "slovenia", str(tmp / "nothing"), str(tmp / "out")], "nothing"),
    ]


def test_bad_inputs_give_a_message_and_no_traceback(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failures = []
    for argv, expected in _cases(tmp_path):
        rc = main(argv)
        out, err = capsys.readouterr()
        text = out + err
        if rc == 0 or "Traceback" in text or expected not in text or not err.startswith("error: "):
            failures.append(f"{' '.join(argv)} -> rc {rc}: {text.strip()[:300]}")
    assert not failures, "\n".join(failures)
