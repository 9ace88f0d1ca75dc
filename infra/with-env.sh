#!/usr/bin/env bash
# Installs the locked environment (idempotent; a no-op in about a second when it is already
# there) and runs the given command inside it:  bash infra/with-env.sh python -m pytest
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

find_python310() {
  local candidate
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
  fi
  for candidate in python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
    command -v "$candidate" >/dev/null 2>&1 && { command -v "$candidate"; return; }
  done
  return 1
}

if ! command -v uv >/dev/null 2>&1; then
  echo "with-env: installing uv from PyPI" >&2
  python3 -m pip install --quiet uv
  hash -r
fi
python310="$(find_python310)" || {
  echo "with-env: Python 3.10 not found. TFX 1.16 needs Python 3.10: install it (e.g. 'pyenv install 3.10') and re-run." >&2
  exit 1
}
uv sync --frozen --quiet --extra faces --extra formats --python "$python310"

export PATH="$repo/.venv/bin:$PATH"
export VIRTUAL_ENV="$repo/.venv"
export TF_USE_LEGACY_KERAS=1  # TFX 1.16 / tf.Transform need Keras 2 (tf_keras)
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$@"
