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
    # torch's CUDA build and its libraries take about 7 GB here (and pip unpacks under $TMPDIR):
    # say so up front rather than leave a bare "No space left on device" deep in pip's output.
    for dir in . "${TMPDIR:-/tmp}"; do
        free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
        if [ -n "$free_kb" ] && [ "$free_kb" -lt 8000000 ]; then
            echo "bootstrap.sh: warning: $(( free_kb / 1024 )) MiB free under $(cd "$dir" && pwd); installing" \
                 "the studio's packages needs about 8 GB" >&2
        fi
    done
    .venv/bin/python -m pip install --quiet --upgrade pip
    # pip, not uv/poetry: torch and torchvision are taken from this machine's local files.
    .venv/bin/python -m pip install --quiet -e '.[test]'
    # umap-learn compiles its numba functions on first use (about 15 s); compiled once here into
    # the disk cache, the studio's first map does not wait for it. A failure only costs that time.
    .venv/bin/python -m core.projection || echo "bootstrap.sh: note: the map's numba cache was not filled" >&2
    echo "$want" > "$stamp"
fi
# The window needs some X11 libraries a fresh Debian/Ubuntu lacks: name the apt-get line now (a
# warning only: the tests and the commands run without them).
if [ "$(uname -s)" = Linux ]; then
    .venv/bin/python -m app.platform_check || true
fi
