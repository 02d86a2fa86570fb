#!/usr/bin/env bash
# Start the main job: the Streamlit app (and, unless WORKBENCH_SCHEDULER is set, the embedded local cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m jobs app "$@"
