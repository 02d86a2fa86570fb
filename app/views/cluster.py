"""Cluster: the Dask cluster in use, its workers, threads and memory, and its dashboard."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from jobs.cluster_check import scene_needs
from jobs.local_cluster import ensure_local_cluster

P = "cluster"

st.title("Cluster")
info = state.cluster_info()
if not info.reachable:
    st.warning(info.error)
    if not info.address or info.local:
        if st.button("Start the local cluster", key=state.key(P, "start")):
            with st.spinner("Starting a local Dask cluster..."):
                ensure_local_cluster(state.settings())
            st.rerun()
    st.stop()

kind = "local (embedded)" if info.local else "remote"
st.markdown(f"**Scheduler:** `{info.address}` ({kind})")
if info.dashboard:
    st.markdown(f"**Dashboard:** [{info.dashboard}]({info.dashboard})")
c = st.columns(3)
c[0].metric("Workers", info.n_workers)
c[1].metric("Threads", info.threads)
c[2].metric("Memory", f"{info.memory_bytes / 2**30:.1f} GiB" if info.memory_bytes else "unlimited")
workers = pd.DataFrame(
    [
        {
            "name": w.name,
            "address": w.address,
            "host": w.host,
            "threads": w.nthreads,
            "memory limit (GiB)": round(w.memory_limit / 2**30, 2) if w.memory_limit else None,
            "memory used (GiB)": round(w.memory_used / 2**30, 2) if w.memory_used is not None else None,
            "CPU %": w.cpu_percent,
            "executing": w.executing,
        }
        for w in info.workers
    ]
)
st.dataframe(workers, hide_index=True, width="stretch", key=state.key(P, "workers"))
if st.button("Refresh", key=state.key(P, "refresh")):
    st.rerun()

st.subheader("Pre-flight")
st.caption(
    "Asks every worker (and the scheduler) whether it can run the engine's jobs: it imports the engine, has "
    "the client's package versions, sees the scene's files as registered and the workbench folder, and has "
    "Horovod with gloo. Nothing is started on the cluster."
)
scene_names = [s.name for s in state.scene_store().list()]
c = st.columns([2, 1, 2])
scene_name = c[0].selectbox("Files of scene", ["(none)", *scene_names], key=state.key(P, "scene"))
ranks = c[1].number_input("Ranks", 1, 1024, min(2, max(info.n_workers, 1)), key=state.key(P, "ranks"))
horovod = c[2].checkbox(
    "Horovod (imports TensorFlow on every worker: tens of seconds)", value=True, key=state.key(P, "horovod")
)
if st.button("Check every worker", key=state.key(P, "check")):
    with st.spinner("Asking every worker..."):
        report = state.cluster_preflight(
            scene_needs(None if scene_name == "(none)" else scene_name, int(ranks), horovod, state.settings().db_url)
        )
    st.dataframe(pd.DataFrame(report.rows()), hide_index=True, width="stretch", key=state.key(P, "preflight"))
    for problem in report.problems:
        st.error(problem.message)
    for warning in report.warnings:
        st.warning(warning)
    if report.ok:
        st.success(f"Every worker can run the job ({report.seconds:.1f} s).")
