"""Live run: follow one run (progress, phase, ETA, loss curve, workers) and cancel it."""

from __future__ import annotations

import altair as alt
import streamlit as st

from app import state
from app.services import history
from app.services.live import PHASES, active_run_ids, finished_message, format_seconds, live_status, workers_table
from core.errors import RunNotFoundError
from jobs import launch as launcher

P = "live"
REFRESH_SECONDS = 2

st.title("Live run")
tracker = state.tracker()
recent = tracker.list(limit=100)
if not recent:
    st.info("No run yet. Launch one on the **Map and launch** page.")
    st.stop()

active = active_run_ids(tracker)
options = active + [r.id for r in recent if r.id not in active]
wanted = st.query_params.get("run")
current = state.get(P, "run_id")
if wanted and wanted.isdigit() and int(wanted) in options:
    current = int(wanted)
if current not in options:
    current = options[0]
labels = {r.id: f"run {r.id} - {r.kind} - {(r.config or {}).get('scene', '')}" for r in recent}
run_id = st.selectbox(
    "Run",
    options,
    index=options.index(current),
    format_func=lambda i: labels.get(i, f"run {i}"),
    key=state.key(P, "select"),
)
state.put(P, "run_id", run_id)


@st.fragment(run_every=REFRESH_SECONDS)
def live_panel(run_id: int) -> None:
    """Re-drawn every few seconds from the database; the rest of the page stays as it is."""
    try:
        s = live_status(tracker, run_id)
    except RunNotFoundError as exc:
        st.error(str(exc))
        return
    phase = s.phase or ("done" if s.status == "succeeded" else "waiting to start")
    step_txt = f"phase {s.phase_index}/{len(PHASES)}: " if s.phase_index else ""
    st.progress(s.fraction, text=f"{step_txt}{phase} - {s.done}/{s.total}" if s.total else f"{step_txt}{phase}")
    c = st.columns(5)
    c[0].metric("Status", s.status)
    c[1].metric("Epoch", "-" if s.epoch is None else str(s.epoch))
    c[2].metric("Step", "-" if s.step is None else str(s.step))
    c[3].metric("ETA (phase)", format_seconds(s.eta_seconds))
    c[4].metric("Elapsed", format_seconds(s.elapsed_seconds))
    if s.status == "failed":
        head, _, detail = (s.error or "").partition("\n")
        st.error(f"Run failed: {head}")
        if detail.strip():
            with st.expander("Traceback"):
                st.code(detail.strip(), language=None)
    elif s.status == "cancelled":
        st.warning(f"Run cancelled: {s.error or ''}")
    elif s.status == "succeeded":
        row = tracker.get(run_id)
        text, parent = finished_message(row.kind, row.config, row.artifacts, row.id)
        st.success(text)
        if parent is not None:
            state.map_link(parent)

    if not s.restarts.empty:
        last = s.restarts.iloc[-1]
        st.warning(
            f"Training restarted {len(s.restarts)} time(s) after a lost worker; last: {last['reason']} "
            f"-> {last['ranks_after']} rank(s) from epoch {last['from_epoch'] or 0}"
        )
        st.dataframe(s.restarts, hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left:
        st.markdown("**Loss**")
        steps = s.steps.dropna(subset=["loss"])
        if not steps.empty:
            st.altair_chart(
                alt.Chart(steps)
                .mark_line(point=True)
                .encode(
                    x=alt.X("step:Q", title="training step"), y=alt.Y("loss:Q"), color=alt.Color("rank:N", title="rank")
                ),
                width="stretch",
            )
        elif not s.epochs.empty:
            loss = s.epochs[s.epochs["metric"].isin(["loss", "val_loss"])]
            st.altair_chart(
                alt.Chart(loss).mark_line(point=True).encode(x="epoch:Q", y="value:Q", color="metric:N"),
                width="stretch",
            )
        else:
            st.caption("No loss recorded yet.")
    with right:
        st.markdown("**Workers**")
        if s.workers.empty:
            st.caption("No per-worker figures yet.")
        else:
            st.dataframe(workers_table(s.workers), hide_index=True, width="stretch")
    if state.get(P, "was_active", {}).get(run_id) and not s.active:
        state.get(P, "was_active")[run_id] = False
        st.rerun()  # the whole page: the cancel button goes away
    state.put(P, "was_active", {**state.get(P, "was_active", {}), run_id: s.active})


live_panel(run_id)

row = tracker.get(run_id)
parent_map = (row.config or {}).get("prediction_run")
if isinstance(parent_map, int) and row.status != "succeeded":
    state.map_link(parent_map, f"Made from run {parent_map}'s map: open it on Map review")
if row.status in ("pending", "running"):
    if st.button("Cancel run", type="secondary", key=state.key(P, "cancel")):
        with st.spinner(f"Stopping run {run_id} on the cluster..."):
            launcher.cancel_run(run_id, state.settings().db_url)
        st.rerun()
scores, verdict = history.rf_comparison(row)  # a pipeline's random forest, fitted on the same samples
if verdict is not None:
    st.subheader("Deep model vs random forest")
    (st.success if verdict.get("deep_wins") else st.warning)(verdict.get("text", ""))
    st.dataframe(scores, hide_index=True, width="stretch", key=state.key(P, "rf_scores"))
with st.expander("Config"):
    st.json(row.config or {})
