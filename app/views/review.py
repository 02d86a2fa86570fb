"""Map review: a run's prediction over the map with its legend, ground truth and error layers, the polygons and
sample points made from it, two runs compared (side by side, moving together)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import streamlit as st
from streamlit_folium import st_folium

from app import maps, state
from app.services import areas as area_table
from app.services import map_layers, overlays, tiles
from app.services import paths as checked
from core.data.scene import ClassInfo, Scene
from core.errors import SceneNotFoundError, WorkbenchError
from db.models import RunRow
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
        run_id = checked.launch(parse_config(data), state.scheduler_address(), state.settings().db_url)
    except WorkbenchError as exc:
        st.error(str(exc))
        return
    st.success(f"Launched run {run_id} ({data['kind']}); follow it on the **Live run** page, results on **Runs**.")


def _analysis(row: RunRow) -> None:
    """Polygons, a reference sample and an assessment of this run's map, each launched as a job."""
    with st.expander("Polygons, reference sample, assessment"):
        c = st.columns(3)
        mmu = c[0].number_input("Minimum mapping unit", 0.0, 1e6, 0.0, key=state.key(P, "mmu"), persist_state="session")
        unit = c[1].selectbox("Unit", ["px", "ha"], key=state.key(P, "mmu_unit"), persist_state="session")
        tol = c[2].number_input(
            "Simplify (map units)", 0.0, 1e4, 0.0, key=state.key(P, "simplify"), persist_state="session"
        )
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
        per_class = c[0].number_input(
            "Sample points per class", 2, 10000, 50, key=state.key(P, "per_class"), persist_state="session"
        )
        seed = c[1].number_input("Seed", 0, 2**31 - 1, 0, key=state.key(P, "seed"), persist_state="session")
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
        sample = c[0].selectbox(
            "Sample run", samples, format_func=lambda i: f"run {i}", key=state.key(P, "srun"), persist_state="session"
        )
        labels = c[1].text_input(
            "Interpreted labels (CSV / GeoPackage path; empty: the scene's labels)",
            key=state.key(P, "labels"),
            persist_state="session",
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
    """The test-date label raster of a date split, else the first labelled acquisition's. A pipeline's ``split``
    is a dict; a baseline's is the name of the split it was scored on (its tile job holds the split config)."""
    if scene is None:
        return None
    cfg = row.config or {}
    split = cfg.get("split")
    if not isinstance(split, dict):
        split = (cfg.get("tile_job") or {}).get("split")
    test_date = split.get("test_date") if isinstance(split, dict) else None
    for acq in scene.acquisitions:
        if acq.labels and test_date and acq.date == test_date:
            return acq.labels
    return next((a.labels for a in scene.acquisitions if a.labels), None)


@st.cache_data(show_spinner=False, max_entries=64)
def _geo_extent(path: str, mtime: float) -> tuple[list[list[float]], int] | None:
    return tiles.geo_extent(path)


def _bands() -> str:
    """The imagery's bands as R,G,B (the text the user typed, spaces removed)."""
    return str(st.session_state.get(state.key(P, "bands")) or "3,2,1").replace(" ", "")


def _tile_layers(row: RunRow, opacity: float, show_truth: bool, notes: list[str]) -> list:
    """The run's layers as web-map tiles at full resolution: imagery, prediction, confidence (hidden at first in
    the layer control), ground truth; a layer whose file is missing or refused is left out with an error."""
    wanted = [("imagery", "imagery", 1.0, True), (f"run {row.id} prediction", "prediction", opacity, True)]
    if (row.artifacts or {}).get("confidence"):
        wanted.append((f"run {row.id} confidence", "confidence", 0.8, False))
    if show_truth:
        wanted.append(("ground truth", "truth", opacity, True))
    layers = []
    for name, layer, alpha, show in wanted:
        try:
            query = {"bands": _bands()} if layer == "imagery" else {}
            ref = tiles.layer_ref(row.id, layer, **query)
        except tiles.TileError as exc:
            if layer == "truth" and exc.status == 404 and "has no" in exc.message:
                notes.append(f"run {row.id}: its scene has no label raster to show")
            elif layer != "imagery" or "has no" not in exc.message:
                st.error(exc.message)
            continue
        if ref is not None:
            layers.append((name, dataclasses.replace(ref, show=show), alpha))
    return layers


def _layers(row: RunRow, opacity: float, show_truth: bool, show_error: bool) -> tuple[list, list[str]]:
    """Layers ``(name, tile layer or overlay, opacity)`` for one run, plus notes for the user. A georeferenced
    map is drawn as tiles at full resolution; a map that is not (it cannot be tiled in Web Mercator) as
    decimated images."""
    pred = _prediction(row)
    scene = _scene(row)
    classes = _classes(scene, pred)  # type: ignore[arg-type]
    notes: list[str] = []
    labels = _labels_path(scene, row)
    if _geo_extent(pred, os.path.getmtime(pred)) is not None:  # type: ignore[arg-type]
        layers = _tile_layers(row, opacity, show_truth, notes)
    else:
        layers = _overlay_layers(row, pred, scene, classes, labels, opacity, show_truth, notes)  # type: ignore[arg-type]
    if show_error and labels:
        err, share = _error_overlay(pred, labels, os.path.getmtime(pred))  # type: ignore[arg-type]
        layers.append(("errors", err, 0.9))
        if share is not None:
            notes.append(f"run {row.id}: {share:.1%} of labelled pixels in the prediction's extent are wrong (red)")
    return layers, notes


def _overlay_layers(
    row: RunRow,
    pred: str,
    scene: Scene | None,
    classes: tuple[ClassInfo, ...],
    labels: str | None,
    opacity: float,
    show_truth: bool,
    notes: list[str],
) -> list:
    """Decimated image overlays (for scenes that are not georeferenced)."""
    layers: list = []
    if scene is not None:
        ql = _quicklook(tuple(scene.acquisition().files.get(scene.primary.name, ())))
        if ql is not None:
            layers.append(("imagery", ql, 1.0))
    ov = _class_overlay(pred, os.path.getmtime(pred), classes)
    if ov.factor > 1:
        notes.append(
            f"run {row.id}: prediction of {ov.source_shape[1]} x {ov.source_shape[0]} px shown at 1/{ov.factor} "
            "resolution to keep the page responsive (the download is full resolution)"
        )
    layers.append((f"run {row.id} prediction", ov, opacity))
    if show_truth:
        if labels:
            layers.append(("ground truth", _class_overlay(labels, os.path.getmtime(labels), classes), opacity))
        else:
            notes.append(f"run {row.id}: its scene has no label raster to show")
    return layers


@st.cache_data(show_spinner="Reading the layer...", max_entries=16)
def _geojson(layer: map_layers.VectorLayer, mtime: float) -> dict:
    return map_layers.layer_geojson(layer)


def _vector_choice(row: RunRow) -> list[tuple[map_layers.VectorLayer, dict]]:
    """The polygons and sample points made from this run's map that the user ticks (all, at first)."""
    found = map_layers.vector_layers(state.tracker(), row.id)
    if not found:
        return []
    names = [v.name for v in found]
    chosen = st.multiselect(
        f"Layers of run {row.id}'s map",
        names,
        default=names,
        key=state.key(P, f"vectors_{row.id}"),
        persist_state="session",
    )
    out = []
    for v in found:
        if v.name in chosen:
            out.append((v, _geojson(v, os.path.getmtime(v.source))))
    return out


def _drawn(vectors: list[tuple[map_layers.VectorLayer, dict]], notes: list[str]) -> list[tuple[str, dict]]:
    out = []
    for v, gj in vectors:
        if map_layers.drawable(gj):
            out.append((v.name, gj))
        else:
            notes.append(f"{v.name}: {len(gj['features']):,} features are too many to draw here; download them (right)")
    return out


def _view_key(map_key: str, *run_ids: int) -> str:
    return state.key(P, f"view_{map_key}_{'_'.join(map(str, run_ids))}")


def _folium(fmap: object, map_key: str, view_key: str) -> None:
    """Draw a map and remember the view (centre, zoom) the browser reports after each pan or zoom."""
    result = st_folium(fmap, key=map_key, height=520, use_container_width=True, returned_objects=["center", "zoom"])
    if result and result.get("center") and result.get("zoom"):
        st.session_state[view_key] = {"center": result["center"], "zoom": result["zoom"]}


def _start_view(view_key: str, signature: str) -> dict | None:
    """The view a map is built at: the last one the user had when its layers change (so a toggle, a swap or a
    return to the page keeps the place), else the view it was built at, unchanged, so that a report of the
    view, which reruns the page, does not re-create the map (the map then stays where the user is, no jumps)."""
    built = st.session_state.get(view_key + "_built")
    if built is None or built["signature"] != signature:
        built = {"signature": signature, "view": st.session_state.get(view_key)}
        st.session_state[view_key + "_built"] = built
    return built["view"]


def _show(rows: list[RunRow], opacity: float, truth: bool, error: bool, map_key: str, view: tuple[int, ...]) -> None:
    """One map of ``rows[0]``, or two maps moving together for two rows; notes below. The view (centre, zoom) is
    kept per ``view`` (run ids): toggling a layer or swapping two runs keeps the place the user looks at."""
    built = [_layers(r, opacity, truth, error) for r in rows]
    vectors = [_vector_choice(r) for r in rows]
    notes = [n for _, ns in built for n in ns]
    drawn = [_drawn(v, notes) for v in vectors]
    preds = [next((ov for name, ov, _ in layers if name.endswith("prediction")), None) for layers, _ in built]
    if any(p is None for p in preds):  # its file is refused or unreadable: the error is on the page already
        return
    colours = map_layers.class_colours(_classes(_scene(rows[0]), _prediction(rows[0])))  # type: ignore[arg-type]
    view_key = _view_key(map_key, *view)
    layer_names = ([[n for n, _, _ in b] for b, _ in built], [[n for n, _ in d] for d in drawn])
    signature = repr(([r.id for r in rows], layer_names, opacity, state.page_visit()))
    start = _start_view(view_key, signature)
    if preds[0].bounds is None:  # type: ignore[union-attr]  # not georeferenced: plain images
        for layers, _ in built:
            for name, ov, _ in layers:
                st.image(ov.png, caption=name, width="stretch")
    else:
        if len(rows) == 2:
            fmap: object = maps.dual_review_map(
                built[0][0], built[1][0], preds[0].bounds, (drawn[0], drawn[1]), colours, start
            )
        else:
            fmap = maps.review_map(built[0][0], preds[0].bounds, drawn[0], colours, start)
        _folium(fmap, map_key, view_key)
    for n in notes:
        st.caption(n)


def _download(label: str, path: str, run_id: int, key: str) -> None:
    size = os.path.getsize(path)
    if size > MAX_DOWNLOAD_BYTES:
        st.caption(f"{label} ({size / 2**20:.0f} MiB) is on the server at {path}")
        return
    with open(path, "rb") as fh:
        st.download_button(
            label,
            fh.read(),
            file_name=map_layers.download_name(run_id, path),
            mime=map_layers.MIME.get(Path(path).suffix, "application/octet-stream"),
            key=state.key(P, key),
        )


def _downloads(row: RunRow) -> None:
    """The map (and confidence) GeoTIFFs, then each layer made from the map as GPKG, GeoJSON and CSV, all named
    after their run."""
    st.markdown("**Downloads**")
    _download("Download GeoTIFF", _prediction(row), row.id, "download")  # type: ignore[arg-type]
    conf = (row.artifacts or {}).get("confidence")
    if conf and Path(conf).exists():
        _download("Confidence GeoTIFF", conf, row.id, "download_conf")
    for layer in map_layers.vector_layers(state.tracker(), row.id):
        gj = _geojson(layer, os.path.getmtime(layer.source))
        st.caption(layer.name)
        cols = st.columns(3)
        for col, d in zip(cols, map_layers.layer_downloads(layer, gj)):
            col.download_button(
                d.label, d.data, file_name=d.file_name, mime=d.mime, key=state.key(P, f"dl_{layer.run_id}_{d.label}")
            )


def _side(row: RunRow, show_error: bool) -> None:
    pred_path = _prediction(row)
    st.html(maps.legend_html(_classes(_scene(row), pred_path)))  # type: ignore[arg-type]
    if show_error:
        st.html(
            '<div><span style="display:inline-block;width:14px;height:14px;background:#e60000"></span> '
            'wrong<br><span style="display:inline-block;width:14px;height:14px;background:#00aa00;opacity:.45">'
            "</span> right</div>"
        )
    _show_areas(row, pred_path)  # type: ignore[arg-type]
    _downloads(row)
    _analysis(row)


def _wanted_run(ids: list[int]) -> None:
    """``?run=ID`` (a link from another page) selects that run once."""
    wanted = st.query_params.get("run")
    if wanted and wanted.isdigit() and int(wanted) in ids:
        st.session_state[state.key(P, "run_a")] = int(wanted)
    if "run" in st.query_params:
        del st.query_params["run"]


st.title("Map review")
tracker = state.tracker()
runs = [r for r in tracker.list(limit=200) if _prediction(r)]
if not runs:
    st.info("No run has a prediction yet. Launch a training with prediction on the **Map and launch** page.")
    st.stop()

labels = {r.id: map_layers.run_label(r) for r in runs}
ids = [r.id for r in runs]
by_id = {r.id: r for r in runs}
_wanted_run(ids)
c = st.columns([2, 2, 2])
run_a = c[0].selectbox("Run", ids, format_func=labels.get, key=state.key(P, "run_a"), persist_state="session")
mode = c[1].radio(
    "Compare", ["one run", "side by side", "swap"], horizontal=True, key=state.key(P, "mode"), persist_state="session"
)
run_b = None
if mode != "one run":
    others = [i for i in ids if i != run_a]
    if others:
        run_b = c[2].selectbox(
            "Second run", others, format_func=labels.get, key=state.key(P, "run_b"), persist_state="session"
        )
    else:
        c[2].caption("Only one run has a prediction.")
t = st.columns([2, 1, 1, 1])
opacity = t[0].slider("Prediction opacity", 0.0, 1.0, 0.7, 0.05, key=state.key(P, "opacity"), persist_state="session")
show_truth = t[1].toggle("Ground truth", key=state.key(P, "truth"), persist_state="session")
show_error = t[2].toggle("Error layer", key=state.key(P, "error"), persist_state="session")
t[3].text_input(
    "Imagery bands (R,G,B)",
    "3,2,1",
    key=state.key(P, "bands"),
    persist_state="session",
    help="Band numbers of the scene's image shown as red, green, blue (2-98 % stretch), e.g. 4,3,2 or 8,4,3",
)

row_a = by_id[run_a]
verdict = (row_a.metrics or {}).get("verdict")
if isinstance(verdict, dict):  # the random forest fitted beside the pipeline (jobs/rf_beside.py), in plain words
    (st.success if verdict.get("deep_wins") else st.warning)(verdict.get("text", ""))
map_col, side_col = st.columns([2, 1])
with map_col:
    if mode == "side by side" and run_b is not None:
        left, right = st.columns(2)
        left.markdown(f"**{labels[run_a]}**")
        right.markdown(f"**{labels[run_b]}**")
        _show([row_a, by_id[run_b]], opacity, show_truth, show_error, state.key(P, "map_dual"), (run_a, run_b))
        st.caption("The two maps move together: pan or zoom either.")
    elif mode == "swap" and run_b is not None:
        if st.button("Swap runs", key=state.key(P, "swap")):
            state.put(P, "swapped", not state.get(P, "swapped", False))
        shown = by_id[run_b] if state.get(P, "swapped", False) else row_a
        st.markdown(f"**Showing {labels[shown.id]}**")
        _show([shown], opacity, show_truth, show_error, state.key(P, "map_swap"), tuple(sorted((run_a, run_b))))
    else:
        _show([row_a], opacity, show_truth, show_error, state.key(P, "map_a"), (run_a,))
with side_col:
    _side(row_a, show_error)
