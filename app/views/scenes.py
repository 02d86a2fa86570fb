"""Scenes: what is registered (modalities, dates, classes, files) and registering new scenes from server files."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import maps, state
from app.services.scene_forms import register_from_form, register_samples, sample_names
from core.errors import WorkbenchError

P = "scenes"

st.title("Scenes")
settings = state.settings()
scenes = state.scene_store().list()

if scenes:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "id": s.id,
                    "name": s.name,
                    "georeferenced": s.georeferenced,
                    "modalities": ", ".join(f"{m.name} {m.width}x{m.height}x{m.band_count}" for m in s.modalities),
                    "dates": len(s.acquisitions),
                    "classes": len(s.classes),
                    "labels": s.has_labels,
                }
                for s in scenes
            ]
        ),
        hide_index=True,
        width="stretch",
        key=state.key(P, "table"),
    )
    name = st.selectbox("Details of", [s.name for s in scenes], key=state.key(P, "detail"))
    scene = next(s for s in scenes if s.name == name)
    left, right = st.columns([3, 2])
    with left:
        if scene.description:
            st.caption(scene.description)
        st.markdown("**Modalities**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "name": m.name,
                        "width": m.width,
                        "height": m.height,
                        "bands": m.band_count,
                        "dtype": m.dtype,
                        "resolution": m.resolution,
                    }
                    for m in scene.modalities
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        st.markdown("**Acquisitions**")
        st.dataframe(
            pd.DataFrame(
                [
                    {"date": a.date, "files": "; ".join(p for ps in a.files.values() for p in ps), "labels": a.labels}
                    for a in scene.acquisitions
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    with right:
        if scene.classes:
            st.html(maps.legend_html(scene.classes))
        st.caption(
            "CRS: "
            + (
                "not georeferenced (pixel coordinates)"
                if not scene.georeferenced
                else (scene.crs_wkt or "")[:60] + "..."
            )
        )
else:
    st.info("No scene is registered yet.")

st.subheader("Register a scene")
st.caption("Files must lie under the data roots: " + ", ".join(f"`{r}`" for r in settings.data_roots))
with st.form(state.key(P, "form")):
    c = st.columns(3)
    name = c[0].text_input("Name (letters, digits, _ . -)", key=state.key(P, "name"))
    modality = c[1].text_input("Modality", value="image", key=state.key(P, "modality"))
    date = c[2].text_input("Date (optional, e.g. 20220619)", key=state.key(P, "date"))
    images = st.text_area("Image files, one per line (bands stacked in this order)", key=state.key(P, "images"))
    labels = st.text_input("Label raster (optional; class ids, 0 = unlabelled)", key=state.key(P, "labels"))
    classes = st.text_area("Classes: one 'id,name,#rrggbb' per line, or JSON", key=state.key(P, "classes"))
    georef = st.checkbox("Georeferenced", value=True, key=state.key(P, "georef"))
    submitted = st.form_submit_button("Register", key=state.key(P, "register"))
if submitted:
    try:
        scene = register_from_form(name, images, labels, classes, modality, date, georef, settings=settings)
    except (WorkbenchError, ValueError, OSError) as exc:
        st.error(str(exc))
    else:
        st.success(f"Registered scene {scene.name!r} (id {scene.id}).")
        st.rerun()

samples = sample_names()
if samples:
    st.subheader("Sample scenes")
    chosen = st.multiselect("Sample folders of ../shared/data", samples, key=state.key(P, "samples"))
    if st.button("Register samples", key=state.key(P, "register_samples"), disabled=not chosen):
        with st.spinner("Registering (converting where needed)..."):
            try:
                done = register_samples(chosen, settings)
            except (WorkbenchError, ValueError, OSError) as exc:
                st.error(str(exc))
            else:
                st.success("Registered: " + (", ".join(s.name for s in done) or "nothing new"))
