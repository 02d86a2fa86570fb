"""The Streamlit workbench (``python -m jobs app``). Pages live in ``app/views``; logic lives in ``jobs/``."""
