"""The app's ASGI entry (``streamlit run app/server.py``, what ``python -m jobs app`` starts): the pages of
``app/main.py`` plus the web-map tile route of :mod:`app.services.tiles`, on the same host and port.

Streamlit finds ``app`` (an ``st.App``) and serves it with uvicorn; ``app/main.py`` stays the page router (it can
still be run alone, without tiles, and is what the page tests drive).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/server.py` puts app/ first on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.services import tiles  # noqa: E402

app = st.App("main.py", routes=tiles.routes())
