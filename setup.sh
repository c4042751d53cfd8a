#!/usr/bin/env bash
# Sets up glassforge in ./.venv: Python >= 3.11, PyTorch, the package and its test tools.
#
# Browser tests (tests/test_report_browser.py) drive Debian's Chromium at /usr/bin/chromium through the
# Python playwright package (a dev extra); playwright's own browser download is never used. Where
# /usr/bin/chromium is missing and apt-get is available (Debian/Ubuntu, as root), it is installed;
# elsewhere those tests are skipped. Likewise Debian's postgresql (tests/test_server_history.py starts a
# throwaway cluster of its own from /usr/lib/postgresql/*/bin; the packaged cluster is not used).
#
# PyTorch: a torch already in the venv (for example a CUDA or MPS build you installed) is kept.
# Otherwise, with an NVIDIA GPU (nvidia-smi works) the default torch wheel is installed; on a CPU-only
# machine torch==2.13.0 is installed, which pip takes as a CPU build where one is on the local wheel
# path (set GLASSFORGE_TORCH to another pip requirement, e.g. "torch==2.13.0+cpu", to choose yourself).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON=$candidate
      break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup.sh: glassforge needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  if [ -n "${GLASSFORGE_TORCH:-}" ]; then
    spec=$GLASSFORGE_TORCH
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    spec=torch
  else
    spec=torch==2.13.0
  fi
  echo "setup.sh: installing $spec"
  "${PIP[@]}" install "$spec"
fi

"${PIP[@]}" install -e '.[dev,comfyui]'  # comfyui: the official node editor at /comfy/ (GPL-3.0 wheel)

if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup.sh: installing Debian's chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null ||
      echo "setup.sh: could not install chromium; the browser tests will be skipped" >&2
  else
    echo "setup.sh: no /usr/bin/chromium (Debian: apt-get install chromium); the browser tests will be skipped"
  fi
fi
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup.sh: installing Debian's postgresql for the history database tests"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq postgresql; } >/dev/null ||
      echo "setup.sh: could not install postgresql; the PostgreSQL history tests will be skipped" >&2
  else
    echo "setup.sh: no PostgreSQL server binaries (Debian: apt-get install postgresql); the PostgreSQL history tests will be skipped"
  fi
fi
.venv/bin/python -c 'import glassforge, torch; print(f"setup.sh: glassforge {glassforge.__version__} ready (torch {torch.__version__})")'
