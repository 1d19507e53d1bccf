#!/usr/bin/env bash
# The container's install steps, in one place: PyTorch, then this package with the serve
# extra, then a check that attngan-serve and its web page are installed. .ci/run runs the
# same script in a clean virtualenv.
#
#   docker/install.sh [PYTHON]          (default: python3; e.g. .venv-clean/bin/python)
#
# TORCH_SPEC       torch and torchvision to install (default: the tested releases)
# TORCH_INDEX_URL  where to get them, e.g. https://download.pytorch.org/whl/cpu (default: pip's index)
set -euo pipefail
PYTHON=${1:-python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}

# shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
"$PYTHON" -m pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} $TORCH_SPEC
# from a copy, so that the build leaves nothing (build/, *.egg-info) in the source tree
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp -r "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/code" "$copy/"
"$PYTHON" -m pip install --no-cache-dir "$copy[serve]"
# from outside the source tree, so that the installed package (not code/) is what runs
cd /
"$PYTHON" -m attngan.serve --help > /dev/null
"$PYTHON" - <<'PY'
from attngan.serve.app import STATIC
missing = [f for f in ("index.html", "app.js", "style.css") if not (STATIC / f).is_file()]
assert not missing, f"the installed package lacks the web page's {missing} in {STATIC}"
print(f"attngan-serve installed, web page in {STATIC}")
PY
