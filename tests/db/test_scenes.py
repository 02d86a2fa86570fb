from dataclasses import replace

import pytest

from core.data.scene import Acquisition, ClassInfo, FileFingerprint, Modality, Scene
from core.errors import ConfigError, SceneExistsError, SceneNotFoundError
from db.scenes import SceneStore


def _scene(name: str = "s1") -> Scene:
    return Scene(
        name=name,
        georeferenced=True,
        crs_wkt="EPSG:32633",
        modalities=(Modality("s2", 10, 12, (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), 3, "uint16", (0, 0, None)),),
        acquisitions=(Acquisition("2021-01-01", {"s2": ("/a.tif",)}, "/l.tif"),),
        classes=(ClassInfo(1, "forest", "#00ff00"),),
        label_modality="s2",
        fingerprints=(FileFingerprint("/a.tif", 1, 2, "d"), FileFingerprint("/l.tif", 3, 4, "e")),
    )


def test_scene_round_trips_with_id(db_url):
    store = SceneStore(db_url)
    stored = store.add(_scene())
    assert stored.id is not None
    again = store.get("s1")
    assert again == stored and store.get(stored.id) == stored
    assert again.modality("s2").resolution == 10.0


def test_duplicate_name_is_refused_and_nothing_changes(db_url):
    store = SceneStore(db_url)
    store.add(_scene())
    with pytest.raises(SceneExistsError, match="'s1' is already registered; choose another --name"):
        store.add(_scene())
    assert [s.name for s in store.list()] == ["s1"]


def test_unknown_scene_lists_registered_ones(db_url):
    store = SceneStore(db_url)
    store.add(_scene("alpha"))
    with pytest.raises(SceneNotFoundError, match=r"no scene 'beta' is registered; registered scenes: \['alpha'\]"):
        store.get("beta")


def test_remove_deletes_rows(db_url):
    store = SceneStore(db_url)
    store.add(_scene())
    store.remove("s1")
    assert store.list() == []


def test_remove_with_runs_refuses_then_keeps_or_deletes_them(db_url):
    from core.errors import SceneInUseError
    from db.runs import RunTracker

    store, tracker = SceneStore(db_url), RunTracker(db_url)
    sid = store.add(_scene("a")).id
    runs = [tracker.create("tile", {"kind": "tile", "scene": "a"}, scene_id=sid) for _ in range(2)]
    tracker.event(runs[0], "log", message="kept with its run")
    with pytest.raises(SceneInUseError, match=r"scene 'a' has 2 run\(s\); remove it with --keep-runs .* --with-runs"):
        store.remove("a")
    assert [s.name for s in store.list()] == ["a"] and len(tracker.list()) == 2  # nothing changed
    assert store.remove("a", runs="keep") == 2
    assert store.list() == [] and {r.scene_id for r in tracker.list()} == {None}
    assert len(tracker.events(runs[0])) == 1
    sid = store.add(_scene("b")).id
    tracker.create("tile", {"kind": "tile", "scene": "b"}, scene_id=sid)
    assert store.remove("b", runs="delete") == 1
    assert len(tracker.list()) == 2  # the two detached runs of 'a' stay


def test_too_long_class_name_is_refused_the_same_on_every_backend(db_url):
    # SQLite would store it; PostgreSQL refuses VARCHAR(200) overflow with a DataError: both refuse it up front
    store = SceneStore(db_url)
    scene = replace(_scene(), classes=(ClassInfo(1, "f" * 250, "#00ff00"),))
    with pytest.raises(ConfigError, match=r"scene_classes.name is 250 characters long, at most 200 fit"):
        store.add(scene)
    assert store.list() == []
