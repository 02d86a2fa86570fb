#!/usr/bin/env bash
# Start the main job. Until the Streamlit app exists this runs the CLI pipeline on a sample scene.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ -f app/main.py ]; then
  exec "$PY" -m jobs app "$@"
fi
"$PY" -m jobs scenes register-samples --only strzegom
"$PY" -m jobs tile --scene strzegom --tile-size 64 --workers 2
"$PY" -m jobs runs list
