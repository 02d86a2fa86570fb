"""The Land-Cover Workbench in the browser: ``python -m jobs app`` (or ``./workbench``) starts it on 127.0.0.1.

A thin router: each page is one module of ``app/views``; their logic lives in ``jobs/`` and ``db/``. Jobs run
detached from this script (see :func:`jobs.launch.launch_detached`), so closing the tab or restarting the app never
stops them; every page reads their state from the database.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ first on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import state  # noqa: E402
from app.maps import configure_offline_assets  # noqa: E402

st.set_page_config(page_title="Land-Cover Workbench", page_icon=":earth_africa:", layout="wide")
configure_offline_assets()

pages = [
    st.Page("views/launch.py", title="Map and launch", icon=":material/map:", default=True),
    st.Page("views/runs.py", title="Runs", icon=":material/table:", url_path="runs"),
    st.Page("views/live.py", title="Live run", icon=":material/monitoring:", url_path="live"),
    st.Page("views/review.py", title="Map review", icon=":material/layers:", url_path="review"),
    st.Page("views/cluster.py", title="Cluster", icon=":material/lan:", url_path="cluster"),
    st.Page("views/scenes.py", title="Scenes", icon=":material/satellite_alt:", url_path="scenes"),
]
page = st.navigation(pages)
state.note_page(page.url_path)
page.run()
