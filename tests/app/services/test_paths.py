"""Every path from the browser (typed, or a field of a job config the app launches) is confined to the data roots
and the run folders, in one place (app/services/paths.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.services.paths import PATH_FIELDS, allowed_roots, check_config, config_paths, confine, launch
from core.errors import PathNotAllowedError
from core.settings import get_settings


def test_confine_accepts_paths_inside_and_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert confine(str(root / "a" / "x.tif"), [root]) == (root / "a" / "x.tif").resolve()
    with pytest.raises(PathNotAllowedError, match=r"is outside the data roots and run folders"):
        confine(str(root / ".." / "x.tif"), [root])
    os.symlink("/etc", root / "link")
    with pytest.raises(PathNotAllowedError, match=r"resolved to '/etc/passwd'"):
        confine(str(root / "link" / "passwd"), [root])
    with pytest.raises(PathNotAllowedError, match="empty path"):
        confine("  ", [root])
    with pytest.raises(PermissionError, match="add its folder to WORKBENCH_DATA_ROOTS"):  # a builtin too
        confine("/etc/passwd", [root])


def test_run_folders_are_allowed_beside_the_data_roots(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", str(tmp_path / "data"))
    settings = get_settings()
    roots = allowed_roots(settings)
    assert roots == (tmp_path / "data", home / "runs", home / "stores")
    assert confine(str(home / "runs" / "run-00003" / "sample.csv"), roots)
    assert confine(str(home / "stores" / "run-00001.zarr"), roots)
    with pytest.raises(PathNotAllowedError):
        confine(str(home / "workbench.db"), roots)  # the home itself is not a data root here


def test_every_path_field_of_a_job_config_is_checked(home: Path) -> None:
    from jobs.assess import AssessJobConfig
    from jobs.kinds import list_kinds, parse_config

    kinds = list_kinds()
    for kind, fields in PATH_FIELDS.items():  # each entry names real fields of the kind's config
        for f in fields:
            cls = kinds[kind].config_class
            head, _, rest = f.partition(".")
            assert head in cls.model_fields, f"{kind}.{f}"
    cfg = AssessJobConfig(prediction_run=1, sample_run=2, labels="/etc/passwd")
    assert config_paths(cfg) == [("labels", "/etc/passwd")]
    with pytest.raises(PathNotAllowedError, match=r"assess config field 'labels': path '/etc/passwd'"):
        check_config(cfg)
    nested = parse_config(
        {"kind": "train", "scene": "x", "tile_job": {"scene": "x", "output": str(home / ".." / ".." / "o.zarr")}}
    )
    with pytest.raises(PathNotAllowedError, match=r"train config field 'tile_job.output'"):
        check_config(nested)
    piped = parse_config({"kind": "pipeline", "scene": "x", "train_options": {"store": "/etc"}})
    with pytest.raises(PathNotAllowedError, match=r"pipeline config field 'train_options.store'"):
        check_config(piped)
    check_config(parse_config({"kind": "predict", "scene": "x", "model": str(home / "runs" / "run-00002" / "model")}))


def test_launch_refuses_before_a_run_exists(home: Path, db_url: str) -> None:
    from db.runs import RunTracker
    from jobs.assess import AssessJobConfig

    with pytest.raises(PathNotAllowedError, match="/etc/passwd"):
        launch(AssessJobConfig(prediction_run=1, sample_run=2, labels="/etc/passwd"), None, db_url)
    assert RunTracker(db_url).list() == []
