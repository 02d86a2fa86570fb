"""Shared plumbing of the pages: settings, the cached database handles and cluster probe, session-state keys.

``st.cache_resource`` objects are shared by every session of the server, so they must be thread-safe:
``RunTracker`` / ``SceneStore`` open one session per call, ``ClusterProbe`` locks around its client.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.services.cluster_info import ClusterInfo, ClusterProbe, resolve_scheduler
from core.errors import ClusterError
from core.settings import Settings, get_settings
from db.runs import RunTracker
from db.scenes import SceneStore


def settings() -> Settings:
    """Settings read from the environment now (cheap)."""
    return get_settings()


@st.cache_resource(show_spinner=False)
def _tracker(db_url: str) -> RunTracker:
    return RunTracker(db_url)


@st.cache_resource(show_spinner=False)
def _scenes(db_url: str) -> SceneStore:
    return SceneStore(db_url)


@st.cache_resource(show_spinner=False)
def _probe(address: str, local: bool) -> ClusterProbe:
    return ClusterProbe(address, local)


def tracker() -> RunTracker:
    return _tracker(settings().db_url)


def scene_store() -> SceneStore:
    return _scenes(settings().db_url)


def scheduler_address() -> str | None:
    """The scheduler jobs are launched on: ``$WORKBENCH_SCHEDULER`` or the running local cluster (or None)."""
    return resolve_scheduler(settings())[0]


def cluster_info() -> ClusterInfo:
    """The cluster in use now; ``error`` set when none is configured or it cannot be reached."""
    address, local = resolve_scheduler(settings())
    if not address:
        return ClusterInfo(
            None,
            None,
            local,
            error="no Dask cluster is running: start the local cluster on the "
            "Cluster page (or `python -m jobs cluster start`), or set "
            "WORKBENCH_SCHEDULER",
        )
    return _probe(address, local).describe()


def cluster_preflight(needs: Any) -> Any:
    """The cluster pre-flight (:class:`core.distributed.preflight.PreflightReport`) of the cluster in use."""
    address, local = resolve_scheduler(settings())
    if not address:
        raise ClusterError(
            "no Dask cluster is running: start the local cluster on the Cluster page, or set WORKBENCH_SCHEDULER"
        )
    return _probe(address, local).preflight(needs)


def key(page: str, name: str) -> str:
    """The session-state key ``<page>_<name>``: every page prefixes its keys so pages never collide."""
    return f"{page}_{name}"


def get(page: str, name: str, default: Any = None) -> Any:
    return st.session_state.get(key(page, name), default)


def put(page: str, name: str, value: Any) -> None:
    st.session_state[key(page, name)] = value


def map_link(run_id: int, label: str | None = None) -> None:
    """A link to run ``run_id``'s map on Map review (``?run=ID`` selects it there)."""
    from streamlit.errors import StreamlitAPIException

    label = label or f"Open run {run_id}'s map on Map review"
    try:
        st.page_link("views/review.py", label=label, icon=":material/layers:", query_params={"run": run_id})
    except StreamlitAPIException:  # the page is run alone (AppTest of one page): a plain link
        st.markdown(f"[{label}](review?run={run_id})")


def note_page(name: str) -> None:
    """Count the visits to pages (the app's router calls this before each page): a page re-entered draws new map
    components, so it rebuilds them where the user left them (see :func:`page_visit`)."""
    if st.session_state.get("app_page") != name:
        st.session_state["app_page"] = name
        st.session_state["app_page_visit"] = st.session_state.get("app_page_visit", 0) + 1


def page_visit() -> int:
    """The number of the current visit to a page (0 when the page runs alone, as in a test of one page)."""
    return int(st.session_state.get("app_page_visit", 0))
