"""Runs: the history table (filter, sort, export) and the comparison of two or more runs."""

from __future__ import annotations

import altair as alt
import streamlit as st

from app import state
from app.services import assessment, history
from core.errors import WorkbenchError

P = "runs"

st.title("Runs")
tracker = state.tracker()
table = history.runs_table(tracker)
if table.empty:
    st.info("No run yet. Launch one on the **Map and launch** page (or with `python -m jobs run CONFIG.json`).")
    st.stop()

with st.expander("Filters", expanded=True):
    c = st.columns(5)
    statuses = c[0].multiselect("Status", sorted(table["status"].dropna().unique()), key=state.key(P, "status"))
    kinds = c[1].multiselect("Kind", sorted(table["kind"].dropna().unique()), key=state.key(P, "kind"))
    scenes = c[2].multiselect("Scene", sorted(table["scene"].dropna().unique()), key=state.key(P, "scene"))
    models = c[3].multiselect("Model", sorted(table["model"].dropna().unique()), key=state.key(P, "model"))
    text = c[4].text_input("Search", key=state.key(P, "text"))
shown = history.filter_runs(table, statuses, scenes, models, kinds, text)

st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    key=state.key(P, "table"),
    column_config={
        "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
        "best_val_accuracy": st.column_config.NumberColumn("best val acc", format="%.3f"),
        "test_oa": st.column_config.NumberColumn("test OA", format="%.3f", help="scored on the test split"),
        "assessed_oa": st.column_config.NumberColumn(
            "assessed OA", format="%.3f", help="estimated from a reference sample (assess run; CI below)"
        ),
        "miou": st.column_config.NumberColumn("mIoU", format="%.3f"),
        "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
        "micro_f1": st.column_config.NumberColumn("micro F1", format="%.3f"),
        "rf_oa": st.column_config.NumberColumn("RF OA", format="%.3f", help="random forest on the same samples"),
        "rf_macro_f1": st.column_config.NumberColumn("RF macro F1", format="%.3f"),
        "vs_rf": st.column_config.TextColumn("vs RF", help="the deep model against its random forest on macro F1"),
        "train_seconds": st.column_config.NumberColumn("training s", format="%.1f"),
        "samples_per_s": st.column_config.NumberColumn("samples/s", format="%.1f"),
    },
)
st.download_button(
    "Export table as CSV", history.table_csv(shown), file_name="runs.csv", mime="text/csv", key=state.key(P, "csv")
)

rf_ids = [int(i) for i, v in zip(shown["id"], shown["vs_rf"]) if isinstance(v, str)]
if rf_ids:
    st.subheader("Deep model vs random forest")
    rid = st.selectbox("Run", rf_ids, format_func=lambda i: f"run {i}", key=state.key(P, "rf_run"))
    scores, verdict = history.rf_comparison(tracker.get(rid))
    if verdict is not None:
        (st.success if verdict.get("deep_wins") else st.warning)(verdict.get("text", ""))
    st.dataframe(
        scores,
        hide_index=True,
        width="stretch",
        key=state.key(P, "rf_scores"),
        column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in ("deep", "rf", "difference")},
    )

assess_ids = [
    int(i) for i, k, st_ in zip(shown["id"], shown["kind"], shown["status"]) if k == "assess" and st_ == "succeeded"
]
if assess_ids:
    st.subheader("Area assessment")
    aid = st.selectbox("Assess run", assess_ids, format_func=lambda i: f"run {i}", key=state.key(P, "assess"))
    arow = tracker.get(aid)
    overall = (arow.metrics or {}).get("overall", {})
    st.markdown(
        f"Overall accuracy **{overall.get('overall_accuracy', float('nan')):.3f}** "
        f"(95% CI {overall.get('overall_accuracy_ci_low', float('nan')):.3f} - "
        f"{overall.get('overall_accuracy_ci_high', float('nan')):.3f}); areas in "
        f"{(arow.metrics or {}).get('area_unit', '')}"
    )
    if isinstance((arow.config or {}).get("prediction_run"), int):
        state.map_link(arow.config["prediction_run"], f"The assessed map: run {arow.config['prediction_run']}")
    note = (arow.metrics or {}).get("reference", {}).get("note")
    if note:
        st.caption(note)
    st.dataframe(assessment.report_table(arow.metrics or {}), hide_index=True, width="stretch")
    st.altair_chart(assessment.area_chart(arow.metrics or {}), use_container_width=True)
    report = (arow.artifacts or {}).get("report")
    if report:
        with open(report, "rb") as fh:
            st.download_button(
                "Report (HTML)",
                fh.read(),
                file_name=f"run-{aid}-report.html",
                mime="text/html",
                key=state.key(P, "assess_html"),
            )

st.subheader("Compare runs")
chosen = st.multiselect(
    "Runs to compare (two or more)", shown["id"].tolist(), key=state.key(P, "compare"), format_func=lambda i: f"run {i}"
)
if len(chosen) < 2:
    st.caption("Pick two or more runs to compare their configs, curves and scores.")
    st.stop()

rows = [tracker.get(int(i)) for i in chosen]
ids = [r.id for r in rows]
curves = history.epoch_curves(tracker, ids)
tabs = st.tabs(["Config", "Training curves", "Per-class F1", "Time and throughput", "Workers", "Confusion"])

with tabs[0]:
    diff = history.config_diff(rows)
    only_diff = st.toggle("Only differences", key=state.key(P, "only_diff"))
    view = diff[diff["differs"]] if only_diff else diff
    st.dataframe(
        view.drop(columns="differs")
        .astype(str)
        .style.apply(lambda r: ["background-color: #fff3b0" if view.loc[r.name, "differs"] else "" for _ in r], axis=1),
        width="stretch",
        key=state.key(P, "diff"),
    )
    st.caption(f"{int(diff['differs'].sum())} of {len(diff)} settings differ (highlighted).")

with tabs[1]:
    if curves.empty:
        st.info("None of these runs recorded per-epoch figures.")
    else:
        for metric_pair, title in ((("loss", "val_loss"), "Loss"), (("accuracy", "val_accuracy"), "Accuracy")):
            data = curves[curves["metric"].isin(metric_pair)]
            if data.empty:
                continue
            st.altair_chart(
                alt.Chart(data, title=title)
                .mark_line(point=True)
                .encode(
                    x=alt.X("epoch:Q"),
                    y=alt.Y("value:Q", title=title.lower()),
                    color="run:N",
                    strokeDash=alt.StrokeDash("metric:N", title="split"),
                ),
                width="stretch",
            )

with tabs[2]:
    f1 = history.per_class_f1(rows)
    if f1.empty:
        st.info("None of these runs recorded per-class scores.")
    else:
        st.altair_chart(
            alt.Chart(f1)
            .mark_bar()
            .encode(
                x=alt.X("class:N", title=None),
                xOffset="run:N",
                y=alt.Y("f1:Q", scale=alt.Scale(domain=[0, 1])),
                color="run:N",
                tooltip=["run", "class", alt.Tooltip("f1:Q", format=".3f")],
            ),
            width="stretch",
        )
        st.dataframe(f1.pivot(index="class", columns="run", values="f1"), width="stretch")

with tabs[3]:
    tp = history.throughput(rows, curves)
    st.dataframe(tp, hide_index=True, width="stretch", key=state.key(P, "throughput"))
    secs = curves[curves["metric"] == "seconds"]
    if not secs.empty:
        st.altair_chart(
            alt.Chart(secs, title="Time per epoch (s)")
            .mark_line(point=True)
            .encode(x="epoch:Q", y=alt.Y("value:Q", title="seconds"), color="run:N"),
            width="stretch",
        )

with tabs[4]:
    traffic = history.worker_traffic(tracker, ids)
    if traffic.empty:
        st.info("No per-worker statistics were recorded for these runs.")
    else:
        per = traffic.groupby(["run", "worker"], as_index=False).agg(
            MiB_sent=("bytes_sent", lambda s: s.sum() / 2**20),
            MiB_recv=("bytes_recv", lambda s: s.sum() / 2**20),
            cpu_percent=("cpu_percent", "mean"),
            peak_mem_MiB=("peak_mem_bytes", lambda s: s.max() / 2**20),
        )
        st.dataframe(per, hide_index=True, width="stretch", key=state.key(P, "traffic"))
        long = per.melt(id_vars=["run", "worker"], value_vars=["MiB_sent", "MiB_recv", "cpu_percent"])
        st.altair_chart(
            alt.Chart(long)
            .mark_bar()
            .encode(
                x=alt.X("worker:N", title=None),
                xOffset="run:N",
                y="value:Q",
                color="run:N",
                column=alt.Column("variable:N", title=None),
            )
            .resolve_scale(y="independent")
        )

with tabs[5]:
    for r in rows:
        try:
            names = {c.id: c.name for c in state.scene_store().get((r.config or {}).get("scene") or "").classes}
        except WorkbenchError:
            names = {}
        cm = history.confusion_long(r, class_names=names)
        if cm.empty:
            st.caption(f"run {r.id}: no confusion matrix recorded")
            continue
        order = list(dict.fromkeys(cm["reference"]))  # class id order, not alphabetical
        heat = (
            alt.Chart(cm, title=f"run {r.id} (row-normalised)")
            .mark_rect()
            .encode(
                x=alt.X("predicted:N", sort=order),
                y=alt.Y("reference:N", sort=order),
                color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1])),
                tooltip=["reference", "predicted", "count", alt.Tooltip("share:Q", format=".2f")],
            )
        )
        text = (
            alt.Chart(cm)
            .mark_text(fontSize=10)
            .encode(
                x=alt.X("predicted:N", sort=order),
                y=alt.Y("reference:N", sort=order),
                text="count:Q",
                color=alt.value("black"),
            )
        )
        st.altair_chart(heat + text, width="stretch")
