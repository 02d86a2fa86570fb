#!/usr/bin/env bash
# Installs everything into a project-local virtual environment (.venv). Idempotent: a second run that finds
# everything in place returns in seconds. Order matters: TensorFlow must be installed before Horovod is built.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${WORKBENCH_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

stamp="$VENV/.installed-$(cat requirements.txt requirements-horovod.txt pyproject.toml | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  exit 0
fi

echo "[install] creating virtual environment in $VENV (first install takes about 10 minutes: Horovod compiles)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip wheel setuptools
echo "[install] installing Python packages (TensorFlow first)"
"$VENV/bin/python" -m pip install --quiet -r requirements.txt
echo "[install] building Horovod with TensorFlow and gloo (about 5 minutes the first time, cached afterwards)"
HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 \
  HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
  "$VENV/bin/python" -m pip install --quiet --no-build-isolation -r requirements-horovod.txt
echo "[install] installing the workbench itself (editable: core, jobs, db, app import from any folder; 'workbench' command)"
"$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
"$VENV/bin/python" - <<'PY'
import horovod.tensorflow as hvd
assert hvd.gloo_built(), "Horovod was built without gloo"
print("[install] horovod", hvd.__version__ if hasattr(hvd, "__version__") else "", "gloo ok")
PY
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "[install] done"
