import json

from jobs.cli import main


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
