#!/usr/bin/env bash
# Print the path of a uv to use, installing one into .tools/uv when none is on the PATH,
# so `make run` and `make test` work on a machine that has only python3.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit 0
fi
tools="$(cd "$(dirname "$0")/../.." && pwd)/.tools/uv"
if [ ! -x "$tools/bin/uv" ]; then
  echo "ferry: uv not found; installing it into $tools (once)" >&2
  python3 -m venv "$tools" >&2 || {
    echo "ferry: python3 -m venv failed: install python3-venv (Debian) or uv itself" >&2
    exit 1
  }
  "$tools/bin/python" -m pip install -q uv >&2
fi
echo "$tools/bin/uv"
