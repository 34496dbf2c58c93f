#!/usr/bin/env sh
# Create .venv and install the studio with its test tools, only when something is missing or
# pyproject.toml changed since the last install. Safe to run before every command.
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.install-stamp
want="$(cat pyproject.toml | cksum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # pip, not uv/poetry: torch and torchvision are taken from this machine's local files.
    .venv/bin/python -m pip install --quiet -e '.[test]'
    echo "$want" > "$stamp"
fi
