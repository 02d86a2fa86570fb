import json
from pathlib import Path

import pytest

from jobs.cli import main
from tests.app.conftest import tiny_scene  # noqa: F401 - fixture


def test_bad_config_file_is_explained(home, tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"kind": "tile", "scene": "s", "tiling": {"tile_size": 64, "stride": 100}}))
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "is not a valid tile config" in err and "stride 100 is larger than tile_size 64" in err


def test_unknown_kind_lists_known_ones(home, tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"kind": "bake", "scene": "s"}))
    assert main(["run", str(bad)]) == 2
    assert "has kind 'bake'; expected one of" in capsys.readouterr().err


def test_missing_config_and_unknown_run(home, capsys):
    assert main(["run", "/nope.json"]) == 2
    assert "config file '/nope.json' does not exist" in capsys.readouterr().err
    assert main(["runs", "show", "42"]) == 2
    assert "run 42 does not exist" in capsys.readouterr().err


def test_runs_list_on_empty_database(home, capsys):
    assert main(["runs", "list"]) == 0
    assert "(none)" in capsys.readouterr().out


def _train_config(path, scene="chiapas_landsat", **train):
    """A train job that tiles its scene first (``tile_job``): the config of issue 18's defect."""
    path.write_text(
        json.dumps(
            {
                "kind": "train",
                "scene": scene,
                "tile_job": {"scene": scene, "mode": "patches", "sampling": {"patch_size": 5, "per_class": 40}},
                "model": "patch_cnn",
                "model_params": {"width": 4},
                "epochs": 1,
                "max_steps_per_epoch": 2,
                **train,
            }
        )
    )
    return str(path)


def test_train_with_a_tile_job_dry_run(home, tmp_path, tiny_scene, capsys):
    """The dry run of a train config with a ``tile_job`` shows pre-flight's findings, the census and the config as
    it would run (its split derived); it used to end in AttributeError: 'TrainJobConfig' ... 'aoi'."""
    from db.runs import RunTracker

    assert main(["run", _train_config(tmp_path / "t.json", "tiny"), "--dry-run"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "info: patches of 5 px, spatial split in blocks of" in out and "estimated peak memory per worker" in out
    assert "what each split gets:" in out
    stated = json.loads(out.split("the job as it would run:\n", 1)[1])
    assert stated["kind"] == "train" and stated["tile_job"]["split"]["block_size"] >= 4
    assert RunTracker().list() == [], "a dry run creates no run"
    far = {"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]]}
    data = json.loads((tmp_path / "t.json").read_text())
    data["tile_job"]["aoi"] = {"geometry": far}
    (tmp_path / "far.json").write_text(json.dumps(data))
    assert main(["train", str(tmp_path / "far.json"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: pre-flight refused the job:\n- AOI with bounds") and "does not overlap" in err


def test_tile_flags_take_the_config_defaults(home, capsys):
    from core.configs import SamplingConfig, TilingConfig
    from jobs.cli import build_parser

    args = build_parser().parse_args(["tile", "--scene", "s"])
    assert args.tile_size is None and args.patch_size is None  # left to the config class
    helptext = build_parser()._subparsers._group_actions[0].choices["tile"].format_help()
    assert f"default: {TilingConfig().tile_size}, TilingConfig.tile_size" in " ".join(helptext.split())
    assert f"default: {SamplingConfig().patch_size}, SamplingConfig.patch_size" in " ".join(helptext.split())
    assert main(["tile", "--scene", "s", "--tile-size", "4"]) == 2
    assert "tiling.tile_size: Input should be greater than or equal to 8" in capsys.readouterr().err


@pytest.mark.cluster
@pytest.mark.shared_data
@pytest.mark.slow
def test_train_with_a_tile_job_runs_on_the_cluster(home, tmp_path, db_url, cluster_client, monkeypatch, capsys):
    """Issue 18's defect, run: ``run`` with a train config that tiles chiapas_landsat first, on the session's real
    2-worker cluster (2 steps of 1 epoch); the run stores the config as pre-flight stated it."""
    from core.data.samples import register_samples
    from db.runs import RunTracker
    from db.scenes import SceneStore

    register_samples(None, SceneStore(db_url), home, only=["chiapas_landsat"])
    monkeypatch.setenv("WORKBENCH_SCHEDULER", cluster_client.scheduler.address)
    path = _train_config(tmp_path / "t.json")
    assert main(["run", path]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "info: patches of 5 px, spatial split in blocks of" in out and "estimated peak memory per worker" in out
    (row,) = RunTracker(db_url).list()
    assert row.status == "succeeded", row.error
    assert row.config["tile_job"]["split"]["block_size"] >= 4 and row.cluster["preflight"]["seconds"] > 0
    assert row.metrics["epochs_run"] == [1] and row.metrics["samples_per_s"] > 0
    assert Path(row.artifacts["model"], "model.keras").exists() and Path(row.artifacts["store"]).exists()
