#!/usr/bin/env bash
# A side environment with another Triton release, for the compile gate under the GPU machine's Triton (3.6) and the
# newest one (3.9): a venv that sees this Python's packages (numpy, pytest, ...) but has its own triton, with
# tritorch installed from this tree (editable).
#
#   bash scripts/triton_env.sh 3.6.0                 # makes /tmp/venv-triton-3.6.0 (TRITON_ENV_DIR moves it)
#   /tmp/venv-triton-3.6.0/bin/tritorch compile-check --target sm_90a
#   bash scripts/triton_env.sh 3.6.0 tritorch compile-check --target sm_80     # make (if needed), then run
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${1:?usage: scripts/triton_env.sh TRITON_VERSION [command ...]}"
shift
ENV="${TRITON_ENV_DIR:-/tmp/venv-triton-$VERSION}"
PY="${PYTHON:-python3}"
if [ ! -x "$ENV/bin/python" ] || [ "$("$ENV/bin/python" -c 'import triton; print(triton.__version__)' 2>/dev/null)" != "$VERSION" ]; then
    "$PY" -m venv --system-site-packages "$ENV"
    "$ENV/bin/python" -m pip install -q "triton==$VERSION" wheel "setuptools>=64"
    "$ENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
fi
"$ENV/bin/python" -c 'import triton, tritorch; print(f"triton {triton.__version__} in '"$ENV"'")' >&2
if [ $# -gt 0 ]; then
    PATH="$ENV/bin:$PATH" exec "$@"
fi
