"""Map and launch: pick a scene, draw an AOI (or take the whole scene), set up the job, check it, launch it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import streamlit as st
from streamlit_folium import st_folium

from app import maps, state
from app.services import paths as checked
from app.services.launch_form import BASELINES, build_config, launch_models, model_params, preflight, recipe_defaults
from app.services.overlays import scene_quicklook
from core.configs import AOIConfig
from core.errors import AOIError, ConfigError, WorkbenchError
from core.models import get_model
from core.tasks import get_task
from core.training.schemes import get_scheme, list_schemes
from jobs.census_report import census_table, census_unit
from jobs.preflight import AOIStats, aoi_stats
from jobs.preflight.context import mapping_note

P = "launch"  # session-state prefix
LABELLED_HELP = (
    "Labelled pixels are counted in each dated label raster and added up (a pixel labelled on two dates counts "
    "twice), so they can exceed the AOI's pixels."
)


@st.cache_data(show_spinner=False, max_entries=32)
def _stats(db_url: str, scene_name: str, aoi_json: str | None) -> AOIStats:
    scene = state.scene_store().get(scene_name)
    return aoi_stats(scene, AOIConfig(geometry=json.loads(aoi_json) if aoi_json else None))


@st.cache_data(show_spinner=False, max_entries=16)
def _quicklook(paths: tuple[str, ...]):  # type: ignore[no-untyped-def]
    return scene_quicklook(paths)


def _model_label(name: str, task: str) -> str:
    if name in BASELINES:
        return f"{name} (baseline: {BASELINES[name]})"
    note = mapping_note(name)  # per-pixel models: dense or patch-by-patch maps
    return f"{name} ({task}; {note})" if note else f"{name} ({task})"


def _training_controls(model: str, task: str, scheme: str, recipe: str | None) -> dict[str, Any]:
    """Model size and training recipe of a deep model (only the fields that apply), as build_config's values."""
    d = recipe_defaults(recipe)

    def k(name: str) -> str:  # a preset recipe's controls are new widgets, so they start at its values
        return state.key(P, f"{name}_{recipe or 'default'}")

    v: dict[str, Any] = {"model_params": _model_size_controls(model)}
    if "mp_split" in get_scheme(scheme).options:
        v["mp_split"] = st.radio(
            "Model-parallel split",
            ["baseline", "optimized"],
            key=state.key(P, "mp_split"),
            persist_state="session",
            horizontal=True,
            help="optimized: the last conv block of both branches runs on the fusion rank (less traffic)",
        )
    st.caption("Training recipe")
    v.update(_optimizer_controls(d, k))
    c = st.columns(4)
    v.update(_augment_and_restart_controls(d, k, c))
    if get_scheme(scheme).weight_averaging:
        v["ema_decay"] = c[3].number_input(
            "Weight averaging (EMA decay, 0 = off)",
            0.0,
            0.9999,
            d["ema_decay"],
            0.001,
            format="%.4f",
            key=k("ema"),
            persist_state="session",
            help="validate and keep the average of the weights over training, e.g. "
            "0.995 (~ the last 200 steps): steadier accuracy on new data",
        )
        c = st.columns(4)
    v.update(_task_and_scheme_controls(d, k, c, task, scheme))
    return v


def _model_size_controls(model: str) -> dict[str, Any]:
    """The model's size parameters (from its registry entry), one widget each."""
    params: dict[str, Any] = {}
    st.caption(f"Model size ({model})")
    for col, p in zip(st.columns(3), model_params(model)):
        wkey = state.key(P, f"{model}_{p.name}")
        if isinstance(p.default, tuple):
            params[p.name] = col.text_input(p.label, ", ".join(map(str, p.default)), key=wkey, persist_state="session")
        else:
            kind = type(p.default)
            params[p.name] = col.number_input(
                p.label,
                kind(p.low),
                kind(p.high),
                p.default,
                key=wkey,
                persist_state="session",
                step=kind(1) if kind is int else 0.05,
            )
    return params


def _optimizer_controls(d: dict[str, Any], k: Callable[[str], str]) -> dict[str, Any]:
    """Optimizer, warm-up, early stopping and the learning-rate decay: two rows of four."""
    v: dict[str, Any] = {}
    c = st.columns(4)
    optimizers = ["adam", "sgd_nesterov"]
    v["optimizer"] = c[0].selectbox(
        "Optimizer", optimizers, optimizers.index(d["optimizer"]), key=k("optimizer"), persist_state="session"
    )
    v["momentum"] = c[1].number_input(
        "Momentum (SGD)", 0.0, 0.999, d["momentum"], 0.05, key=k("momentum"), persist_state="session"
    )
    v["warmup_epochs"] = c[2].number_input(
        "Warm-up epochs", 0, 1000, d["warmup_epochs"], key=k("warmup"), persist_state="session"
    )
    v["patience"] = c[3].number_input(
        "Early-stop patience (validation rounds)", 1, 1000, d["patience"], key=k("patience"), persist_state="session"
    )
    c = st.columns(4)
    v["lr_decay_epochs"] = c[0].number_input(
        "LR decay every N epochs (0 = off)",
        0,
        1000,
        d["lr_decay_epochs"] or 0,
        key=k("decay_epochs"),
        persist_state="session",
    )
    v["lr_decay_at"] = c[1].text_input(
        "or at fractions of the epochs",
        ", ".join(map(str, d["lr_decay_at"] or ())),
        key=k("decay_at"),
        persist_state="session",
        placeholder="e.g. 0.3, 0.6, 0.8 (overrides N)",
    )
    v["lr_decay_factor"] = c[2].number_input(
        "LR decay factor", 0.001, 1.0, d["lr_decay_factor"], 0.05, key=k("decay_factor"), persist_state="session"
    )
    v["mixup_alpha"] = c[3].number_input(
        "Mixup alpha (0 = off)", 0.0, 10.0, d["mixup_alpha"], 0.1, key=k("mixup"), persist_state="session"
    )
    return v


def _augment_and_restart_controls(d: dict[str, Any], k: Callable[[str], str], c: list[Any]) -> dict[str, Any]:
    """Augmentation and automatic restarts, in the first three of the row ``c``."""
    v: dict[str, Any] = {}
    v["augment"] = c[0].checkbox("Augment (flips, rotations)", d["augment"], key=k("augment"), persist_state="session")
    v["max_restarts"] = c[1].number_input(
        "Automatic restarts",
        0,
        100,
        d["max_restarts"],
        key=k("restarts"),
        persist_state="session",
        help="when a worker dies or loses contact, restart the ranks from the last "
        "checkpoint up to this many times (0 = fail at once)",
    )
    v["restart_wait_s"] = c[2].number_input(
        "Wait for workers (s)",
        1.0,
        3600.0,
        float(d["restart_wait_s"]),
        10.0,
        key=k("restart_wait"),
        persist_state="session",
        help="how long a restart waits for enough workers; data_parallel then goes on with the ranks there are",
    )
    return v


def _task_and_scheme_controls(
    d: dict[str, Any], k: Callable[[str], str], c: list[Any], task: str, scheme: str
) -> dict[str, Any]:
    """The fields only this task or scheme reads (label fraction, worker speeds, calibration steps), in row ``c``."""
    v: dict[str, Any] = {}
    options = get_scheme(scheme).options
    if "label_fraction" in get_task(task).train_options:
        v["label_fraction"] = c[1].number_input(
            "Label fraction",
            0.001,
            1.0,
            d["label_fraction"],
            0.01,
            key=k("label_fraction"),
            persist_state="session",
            help="a class is present in a tile when it covers this fraction",
        )
    if "worker_speeds" in options:
        v["worker_speeds"] = c[2].text_input(
            "Worker speeds (blank = measure)",
            key=state.key(P, "worker_speeds"),
            persist_state="session",
            placeholder="one per worker, e.g. 1, 1, 0.5",
        )
    if "calibration_steps" in options:
        v["calibration_steps"] = c[3].number_input(
            "Calibration steps",
            1,
            1000,
            d["calibration_steps"],
            key=state.key(P, "calibration_steps"),
            persist_state="session",
        )
    return v


def _split_controls() -> dict[str, Any]:
    """The spatial split's block size, buffer and seed; left empty, pre-flight derives them from the AOI."""
    st.caption("Spatial split (empty: derived from the tile or patch size and the AOI; pre-flight shows them)")
    c = st.columns(3)
    block = c[0].number_input(
        "Block size (px, 0 = auto)", 0, 100000, 0, key=state.key(P, "block_size"), persist_state="session"
    )
    buffer = c[1].text_input(
        "Buffer (px, blank = auto)", key=state.key(P, "buffer"), persist_state="session", placeholder="auto"
    )
    seed = c[2].text_input(
        "Split seed (blank = auto)", key=state.key(P, "split_seed"), persist_state="session", placeholder="auto"
    )
    out: dict[str, Any] = {"block_size": int(block)}
    for name, text in (("buffer", buffer), ("split_seed", seed)):
        if text.strip():
            out[name] = int(text) if text.strip().isdigit() else text.strip()
    return out


def _seam_controls() -> dict[str, Any]:
    """Where dense prediction tiles meet (:class:`jobs.pipeline.PipelineJobConfig` ``seams`` / ``overlap``)."""
    c = st.columns(2)
    seams = c[0].radio(
        "Map tile seams",
        ["exact", "crop"],
        key=state.key(P, "seams"),
        persist_state="session",
        horizontal=True,
        help="exact: each tile reads the model's receptive-field radius of context, so the map has no "
        "seams; crop: a smaller overlap of your choice, faster, slightly different classes near "
        "tile borders",
    )
    overlap = c[1].number_input(
        "Overlap for crop (px per side)", 0, 1024, 32, key=state.key(P, "overlap"), persist_state="session"
    )
    return {"seams": seams, "overlap": int(overlap) if seams == "crop" else None}


def _baseline_controls() -> dict[str, Any]:
    c = st.columns(3)
    return {
        "features": c[0].radio(
            "Features",
            ["center", "patch"],
            key=state.key(P, "bl_features"),
            persist_state="session",
            horizontal=True,
            help="center: the labelled pixel's bands; patch: the whole patch, flattened",
        ),
        "max_train_samples": c[1].number_input(
            "Max train samples", 10, 10_000_000, 50_000, key=state.key(P, "bl_max_train"), persist_state="session"
        ),
        "predict": c[2].checkbox("Map the AOI with it", True, key=state.key(P, "bl_predict"), persist_state="session"),
    }


st.title("Map and launch")
scenes = state.scene_store().list()
if not scenes:
    st.info("No scene is registered yet. Register one on the **Scenes** page (or the sample scenes).")
    st.stop()

names = [s.name for s in scenes]
scene_name = st.selectbox("Scene", names, key=state.key(P, "scene"), persist_state="session")
scene = next(s for s in scenes if s.name == scene_name)
if state.get(P, "aoi_scene") != scene.name:  # an AOI belongs to the scene it was drawn on
    state.put(P, "aoi", None)
    state.put(P, "aoi_scene", scene.name)

if scene.georeferenced:
    whole = st.checkbox("Use the whole scene", key=state.key(P, "whole"), persist_state="session")
    nonce = state.get(P, "map_nonce", 0)
    primary = scene.acquisition().files.get(scene.primary.name, ())
    fmap = maps.launch_map(scenes, scene, None if whole else state.get(P, "aoi"), _quicklook(tuple(primary)))
    result = st_folium(
        fmap,
        key=state.key(P, f"map_{nonce}"),
        height=460,
        use_container_width=True,
        returned_objects=["last_active_drawing", "all_drawings"],
    )
    drawn = maps.drawn_geometry(result)
    if drawn and drawn != state.get(P, "aoi") and drawn != state.get(P, "last_drawn"):
        state.put(P, "aoi", drawn)
        state.put(P, "last_drawn", drawn)
        st.rerun()
    c1, c2 = st.columns([1, 3])
    if c1.button("Clear AOI", key=state.key(P, "clear")):
        state.put(P, "aoi", None)
        state.put(P, "last_drawn", None)
        state.put(P, "map_nonce", nonce + 1)
        st.rerun()
    with c2.expander("Or paste an AOI as GeoJSON (EPSG:4326)"):
        text = st.text_area("GeoJSON geometry or Feature", key=state.key(P, "geojson"), persist_state="session")
        if st.button("Use this AOI", key=state.key(P, "use_geojson")):
            try:
                obj = json.loads(text)
                state.put(P, "aoi", obj.get("geometry", obj) if obj.get("type") == "Feature" else obj)
                st.rerun()
            except (json.JSONDecodeError, AttributeError) as exc:
                st.error(f"That is not GeoJSON ({exc}); paste a Polygon geometry or Feature.")
    aoi = None if whole else state.get(P, "aoi")
else:
    whole = True
    aoi = None
    st.info(
        f"Scene **{scene.name}** is not georeferenced, so it has no place on the map: the job runs on the "
        f"whole scene ({scene.primary.width} x {scene.primary.height} px)."
    )

if aoi is None and not whole:
    st.caption("Draw a rectangle or polygon on the map (toolbar at the left), or tick *Use the whole scene*.")
else:
    try:
        stats = _stats(state.settings().db_url, scene.name, json.dumps(aoi) if aoi else None)
        m1, m2, m3 = st.columns(3)
        m1.metric("Area", f"{stats.area_km2:.2f} km²" if stats.area_km2 is not None else "n/a")
        m2.metric("Pixels", f"{stats.pixels:,}", help="pixels of the AOI on the label grid (one date)")
        m3.metric("Labelled pixels (all dates)", f"{stats.labelled:,}", help=LABELLED_HELP)
        if stats.labelled > stats.pixels:
            st.caption(LABELLED_HELP)
        for w in stats.warnings:
            st.warning(w)
    except AOIError as exc:
        st.error(str(exc))

st.subheader("Job")
models = launch_models()
schemes = list(list_schemes())
cols = st.columns(2)
model = cols[0].selectbox(
    "Model",
    list(models),
    key=state.key(P, "model"),
    persist_state="session",
    format_func=lambda m: _model_label(m, models[m]),
)
task = models[model]
baseline = model in BASELINES  # an RF / KNN / SVM baseline job on patches of the AOI
scheme = cols[1].selectbox(
    "Parallelism scheme",
    schemes,
    key=state.key(P, "scheme"),
    persist_state="session",
    disabled=baseline,
    index=schemes.index("data_parallel") if "data_parallel" in schemes else 0,
    help="baselines are fitted on one worker" if baseline else None,
)
paper = None if baseline else get_model(model).recipe  # the model's paper recipe, offered as a preset
recipe = (
    paper.name
    if paper and st.toggle(paper.label, key=state.key(P, f"recipe_{paper.name}"), persist_state="session")
    else None
)
tiles = not baseline and get_task(task).tiles
size_task = "patch" if baseline else task
with st.form(state.key(P, "form")):
    if not baseline:
        c = st.columns(4)
        workers = c[0].number_input(
            "Workers",
            min_value=1,
            max_value=256,
            value=2 if get_scheme(scheme).uses_horovod else 1,
            key=state.key(P, "workers"),
            persist_state="session",
        )
        epochs = c[1].number_input(
            "Epochs (0 = auto)",
            min_value=0,
            max_value=1000,
            value=0,
            key=state.key(P, "epochs"),
            persist_state="session",
            help="auto: a step budget sized by the training samples, early stopping and a cosine learning rate "
            "over it (pre-flight states the planned steps)",
        )
        batch = c[2].number_input(
            "Batch size", min_value=1, max_value=4096, value=8, key=state.key(P, "batch"), persist_state="session"
        )
        lr = c[3].number_input(
            "Learning rate",
            min_value=1e-6,
            max_value=1.0,
            value=1e-3,
            format="%.5f",
            key=state.key(P, "lr"),
            persist_state="session",
        )
    c = st.columns(4)
    size = c[0].number_input(
        "Tile size (px, 0 = auto)" if tiles else "Patch size (px, odd)",
        min_value=0,
        max_value=2048,
        value=0 if tiles else 9,
        key=state.key(P, f"size_{size_task}"),
        persist_state="session",
        help="auto: 64 px, or the largest tile whose split blocks fit the AOI" if tiles else None,
    )
    split = c[1].radio(
        "Split", ["spatial", "date"], key=state.key(P, "split"), persist_state="session", horizontal=True
    )
    dates = [d for d in scene.dates if d]
    test_date = c[2].selectbox(
        "Test date (date split)",
        [""] + dates,
        key=state.key(P, "test_date"),
        persist_state="session",
        format_func=lambda d: d or "(none)",
    )
    per_class = c[3].number_input(
        "Patches per class (0 = all)",
        min_value=0,
        value=0 if tiles else 200,
        key=state.key(P, "per_class"),
        persist_state="session",
        disabled=tiles,
    )
    f = st.columns(3)
    train_f = f[0].number_input(
        "Train fraction", 0.0, 1.0, 0.6, 0.05, key=state.key(P, "f_train"), persist_state="session"
    )
    val_f = f[1].number_input(
        "Validation fraction", 0.0, 1.0, 0.2, 0.05, key=state.key(P, "f_val"), persist_state="session"
    )
    test_f = f[2].number_input(
        "Test fraction", 0.0, 1.0, 0.2, 0.05, key=state.key(P, "f_test"), persist_state="session"
    )
    with st.expander("Advanced"):
        advanced = _baseline_controls() if baseline else _training_controls(model, task, scheme, recipe)
        advanced.update(_split_controls())
        predictor = None if baseline else get_task(task).predictor
        if predictor is not None and predictor.reads_context:
            advanced.update(_seam_controls())
    b = st.columns([1, 1, 4])
    check = b[0].form_submit_button("Pre-flight check", key=state.key(P, "check"))
    go = b[1].form_submit_button("Launch", type="primary", key=state.key(P, "go"))

if check or go:
    values = {
        "scene": scene.name,
        "aoi": aoi,
        "model": model,
        "size": int(size),
        "split_method": split,
        "fractions": (train_f, val_f, test_f),
        "test_date": test_date or None,
        "per_class": int(per_class) or None,
        **advanced,
    }
    if not baseline:
        values.update(
            {
                "scheme": scheme,
                "num_workers": int(workers),
                "epochs": int(epochs),
                "batch_size": int(batch),
                "learning_rate": float(lr),
            }
        )
    if scene.georeferenced and aoi is None and not whole:
        st.error("No AOI: draw a rectangle or polygon on the map, paste one, or tick *Use the whole scene*.")
    else:
        try:
            config = build_config(values)
        except ConfigError as exc:
            st.error(str(exc))
        else:
            cluster = state.cluster_info()
            with st.spinner("Checking the job and every worker of the cluster (engine, versions, files, Horovod)..."):
                report = preflight(
                    config,
                    scene,
                    cluster.n_workers if cluster.reachable else None,
                    cluster.min_worker_memory,
                    probe=state.cluster_preflight if cluster.reachable else None,
                )
            for chk in report.checks:
                {"error": st.error, "warning": st.warning, "info": st.info}[chk.level](chk.message)
            if report.census is not None:
                st.caption(f"What each split gets ({census_unit(report.census)} per class):")
                st.dataframe(census_table(report.census, scene), hide_index=True)
            if report.ok and check:
                st.success("Pre-flight check passed: ready to launch.")
            if go and not report.ok:
                st.error("Not launched: fix the errors above first.")
            elif go:
                try:
                    run_id = checked.launch(report.config or config, state.scheduler_address(), state.settings().db_url)
                except (WorkbenchError, OSError) as exc:
                    st.error(f"Launch failed: {exc}")
                else:
                    state.put(P, "last_run", run_id)
                    st.session_state["live_run_id"] = run_id  # shared with the Live run page on purpose
                    st.success(
                        f"Launched run {run_id}. Follow it on the **Live run** page; it keeps running if "
                        "you close this tab."
                    )

if state.get(P, "last_run") is not None and not go:
    st.caption(f"Last launched run: {state.get(P, 'last_run')}")
