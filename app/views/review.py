"""Map review: a run's prediction over the map with its legend, ground truth and error layers, two runs compared."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
from streamlit_folium import st_folium

from app import maps, state
from app.services import areas as area_table
from app.services import overlays
from core.data.scene import ClassInfo, Scene
from core.errors import SceneNotFoundError, WorkbenchError
from db.models import RunRow
from jobs import launch as launcher
from jobs.kinds import parse_config

P = "review"
MAX_DOWNLOAD_BYTES = 512 * 2**20


@st.cache_data(show_spinner="Preparing the overlay...", max_entries=32)
def _class_overlay(path: str, mtime: float, classes: tuple[ClassInfo, ...]) -> overlays.Overlay:
    return overlays.class_overlay(path, classes)


@st.cache_data(show_spinner=False, max_entries=32)
def _error_overlay(pred: str, labels: str, mtime: float) -> tuple[overlays.Overlay, float | None]:
    return overlays.error_overlay(pred, labels)


@st.cache_data(show_spinner="Measuring class areas...", max_entries=32)
def _areas(run_id: int, path: str, mtime: float) -> tuple[list[dict], str, str]:
    row = state.tracker().get(run_id)
    areas = area_table.run_areas(row.metrics, path)
    return area_table.area_rows(areas), area_table.areas_csv(areas), areas.method


def _show_areas(row: RunRow, pred: str) -> None:
    """Mapped area per class beside the legend, with a CSV export."""
    st.markdown("**Mapped area**")
    try:
        rows, text, method = _areas(row.id, pred, os.path.getmtime(pred))
    except WorkbenchError as exc:
        st.caption(f"Areas cannot be measured: {exc}")
        return
    st.dataframe(rows, hide_index=True, width="stretch")
    if method == "pixels":
        st.caption("The scene is not georeferenced: areas are pixel counts.")
    elif method == "geodesic":
        st.caption("Geodesic areas (the map's CRS is geographic).")
    st.download_button(
        "Areas (CSV)", text, file_name=f"run-{row.id}-areas.csv", mime="text/csv", key=state.key(P, "areas_csv")
    )


def _launch(data: dict) -> None:
    """Validate and launch a job from this page; says what was wrong instead of raising."""
    try:
        run_id = launcher.launch_detached(parse_config(data), state.scheduler_address(), state.settings().db_url)
    except WorkbenchError as exc:
        st.error(str(exc))
        return
    st.success(f"Launched run {run_id} ({data['kind']}); follow it on the **Live run** page, results on **Runs**.")


def _analysis(row: RunRow) -> None:
    """Polygons, a reference sample and an assessment of this run's map, each launched as a job."""
    with st.expander("Polygons, reference sample, assessment"):
        c = st.columns(3)
        mmu = c[0].number_input("Minimum mapping unit", 0.0, 1e6, 0.0, key=state.key(P, "mmu"))
        unit = c[1].selectbox("Unit", ["px", "ha"], key=state.key(P, "mmu_unit"))
        tol = c[2].number_input("Simplify (map units)", 0.0, 1e4, 0.0, key=state.key(P, "simplify"))
        if st.button("Vectorize", key=state.key(P, "vectorize")):
            _launch(
                {
                    "kind": "vectorize",
                    "prediction_run": row.id,
                    "min_mapping_unit": mmu,
                    "mmu_unit": unit,
                    "simplify": tol,
                }
            )
        c = st.columns(2)
        per_class = c[0].number_input("Sample points per class", 2, 10000, 50, key=state.key(P, "per_class"))
        seed = c[1].number_input("Seed", 0, 2**31 - 1, 0, key=state.key(P, "seed"))
        if st.button("Draw reference sample", key=state.key(P, "sample")):
            _launch({"kind": "sample", "prediction_run": row.id, "per_class": int(per_class), "seed": int(seed)})
        samples = [
            r.id
            for r in state.tracker().list(kind="sample", status="succeeded")
            if (r.config or {}).get("prediction_run") == row.id
        ]
        if not samples:
            st.caption("Draw a sample first; its GeoPackage / CSV is what photo-interpreters label.")
            return
        c = st.columns(2)
        sample = c[0].selectbox("Sample run", samples, format_func=lambda i: f"run {i}", key=state.key(P, "srun"))
        labels = c[1].text_input(
            "Interpreted labels (CSV / GeoPackage path; empty: the scene's labels)", key=state.key(P, "labels")
        )
        if st.button("Assess", key=state.key(P, "assess")):
            ref = {"labels": labels} if labels else {"reference": "scene_labels"}
            _launch({"kind": "assess", "prediction_run": row.id, "sample_run": sample, **ref})


@st.cache_data(show_spinner=False, max_entries=16)
def _quicklook(paths: tuple[str, ...]) -> overlays.Overlay | None:
    return overlays.scene_quicklook(paths)


def _prediction(row: RunRow) -> str | None:
    path = (row.artifacts or {}).get("prediction")
    return path if path and Path(path).exists() else None


def _scene(row: RunRow) -> Scene | None:
    try:
        return state.scene_store().get((row.config or {}).get("scene", ""))
    except SceneNotFoundError:
        return None


def _classes(scene: Scene | None, pred: str) -> tuple[ClassInfo, ...]:
    if scene is not None and scene.classes:
        return scene.classes
    from core.data.cog import read_classes

    return tuple(ClassInfo(**c) for c in read_classes(pred))


def _labels_path(scene: Scene | None, row: RunRow) -> str | None:
    """The test-date label raster for a date split, else the first labelled acquisition's."""
    if scene is None:
        return None
    test_date = ((row.config or {}).get("split") or {}).get("test_date")
    for acq in scene.acquisitions:
        if acq.labels and test_date and acq.date == test_date:
            return acq.labels
    return next((a.labels for a in scene.acquisitions if a.labels), None)


def _layers(row: RunRow, opacity: float, show_truth: bool, show_error: bool) -> tuple[list, list[str]]:
    """Overlays ``(name, overlay, opacity)`` for one run, plus notes for the user."""
    pred = _prediction(row)
    scene = _scene(row)
    classes = _classes(scene, pred)  # type: ignore[arg-type]
    notes: list[str] = []
    layers = []
    if scene is not None:
        ql = _quicklook(tuple(scene.acquisition().files.get(scene.primary.name, ())))
        if ql is not None:
            layers.append(("imagery", ql, 1.0))
    ov = _class_overlay(pred, os.path.getmtime(pred), classes)  # type: ignore[arg-type]
    if ov.factor > 1:
        notes.append(
            f"run {row.id}: prediction of {ov.source_shape[1]} x {ov.source_shape[0]} px shown at 1/{ov.factor} "
            "resolution to keep the page responsive (the download is full resolution)"
        )
    layers.append((f"run {row.id} prediction", ov, opacity))
    labels = _labels_path(scene, row)
    if show_truth:
        if labels:
            layers.append(("ground truth", _class_overlay(labels, os.path.getmtime(labels), classes), opacity))
        else:
            notes.append(f"run {row.id}: its scene has no label raster to show")
    if show_error and labels:
        err, share = _error_overlay(pred, labels, os.path.getmtime(pred))  # type: ignore[arg-type]
        layers.append(("errors", err, 0.9))
        if share is not None:
            notes.append(f"run {row.id}: {share:.1%} of labelled pixels in the prediction's extent are wrong (red)")
    return layers, notes


def _show(row: RunRow, opacity: float, show_truth: bool, show_error: bool, map_key: str) -> None:
    layers, notes = _layers(row, opacity, show_truth, show_error)
    pred_ov = next(ov for name, ov, _ in layers if name.endswith("prediction"))
    if pred_ov.bounds is None:  # not georeferenced: plain images
        for name, ov, _ in layers:
            st.image(ov.png, caption=name, width="stretch")
    else:
        fmap = maps.review_map(layers, pred_ov.bounds)
        st_folium(fmap, key=map_key, height=480, use_container_width=True, returned_objects=[])
    for n in notes:
        st.caption(n)


st.title("Map review")
tracker = state.tracker()
runs = [r for r in tracker.list(limit=200) if _prediction(r)]
if not runs:
    st.info("No run has a prediction yet. Launch a training with prediction on the **Map and launch** page.")
    st.stop()

labels = {
    r.id: f"run {r.id} - {(r.config or {}).get('scene', '?')} - {(r.config or {}).get('model', r.kind)}" for r in runs
}
ids = [r.id for r in runs]
by_id = {r.id: r for r in runs}
c = st.columns([2, 2, 2])
run_a = c[0].selectbox("Run", ids, format_func=labels.get, key=state.key(P, "run_a"))
mode = c[1].radio("Compare", ["one run", "side by side", "swap"], horizontal=True, key=state.key(P, "mode"))
run_b = None
if mode != "one run":
    others = [i for i in ids if i != run_a]
    if others:
        run_b = c[2].selectbox("Second run", others, format_func=labels.get, key=state.key(P, "run_b"))
    else:
        c[2].caption("Only one run has a prediction.")
t = st.columns([2, 1, 1])
opacity = t[0].slider("Prediction opacity", 0.0, 1.0, 0.7, 0.05, key=state.key(P, "opacity"))
show_truth = t[1].toggle("Ground truth", key=state.key(P, "truth"))
show_error = t[2].toggle("Error layer", key=state.key(P, "error"))

row_a = by_id[run_a]
verdict = (row_a.metrics or {}).get("verdict")
if isinstance(verdict, dict):  # the random forest fitted beside the pipeline (jobs/rf_beside.py), in plain words
    (st.success if verdict.get("deep_wins") else st.warning)(verdict.get("text", ""))
map_col, legend_col = st.columns([5, 1])
with map_col:
    if mode == "side by side" and run_b is not None:
        left, right = st.columns(2)
        with left:
            st.markdown(f"**{labels[run_a]}**")
            _show(row_a, opacity, show_truth, show_error, state.key(P, "map_a"))
        with right:
            st.markdown(f"**{labels[run_b]}**")
            _show(by_id[run_b], opacity, show_truth, show_error, state.key(P, "map_b"))
    elif mode == "swap" and run_b is not None:
        if st.button("Swap runs", key=state.key(P, "swap")):
            state.put(P, "swapped", not state.get(P, "swapped", False))
        shown = by_id[run_b] if state.get(P, "swapped", False) else row_a
        st.markdown(f"**Showing {labels[shown.id]}**")
        _show(shown, opacity, show_truth, show_error, state.key(P, "map_swap"))
    else:
        _show(row_a, opacity, show_truth, show_error, state.key(P, "map_a"))
with legend_col:
    pred_path = _prediction(row_a)
    st.html(maps.legend_html(_classes(_scene(row_a), pred_path)))  # type: ignore[arg-type]
    if show_error:
        st.html(
            '<div><span style="display:inline-block;width:14px;height:14px;background:#e60000"></span> '
            'wrong<br><span style="display:inline-block;width:14px;height:14px;background:#00aa00;opacity:.45">'
            "</span> right</div>"
        )
    _show_areas(row_a, pred_path)  # type: ignore[arg-type]
    _analysis(row_a)
    size = os.path.getsize(pred_path)  # type: ignore[arg-type]
    if size <= MAX_DOWNLOAD_BYTES:
        with open(pred_path, "rb") as fh:  # type: ignore[arg-type]
            st.download_button(
                "Download GeoTIFF",
                fh.read(),
                file_name=Path(pred_path).name,  # type: ignore[arg-type]
                mime="image/tiff",
                key=state.key(P, "download"),
            )
    else:
        st.caption(f"GeoTIFF ({size / 2**20:.0f} MiB) is on the server at {pred_path}")
