#!/usr/bin/env bash
# One command per job on a fresh clone; each bootstraps .venv (pinned) first.
#   ./run.sh repro [dvc repro args]   run the pipeline (dvc repro)
#   ./run.sh test  [pytest args]      run the test suite
#   ./run.sh setup                    only create/update .venv
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

setup() {
  local stamp="$VENV/.installed"
  if [[ -f "$stamp" && "$stamp" -nt requirements.lock && "$stamp" -nt pyproject.toml ]]; then
    return
  fi
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  # torch==2.13.0 is pinned in the lock: an unpinned torch would pull a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.lock
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
  touch "$stamp"
}

# dvc plots show/diff use this page (see .dvc/config): vega scripts inlined from an
# installed package, so the HTML renders offline. Generated, not committed.
plots_template() {
  [[ -f .dvc/plots_template.html ]] || "$VENV/bin/python" -m emergent_pos.report.html_template .dvc/plots_template.html
}

setup
plots_template
export PATH="$PWD/$VENV/bin:$PATH"
case "${1:-}" in
  setup) ;;
  repro) shift; dvc repro "$@" ;;
  test)
    shift
    # The offline-plots test renders dvc's HTML in headless Chromium (Debian's package);
    # install it where we may, otherwise that one test skips and says why.
    if ! command -v chromium >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ||
        echo "run.sh: could not install chromium; the offline-plots test will skip" >&2
    fi
    # One worker per core (PYTEST_WORKERS); --dist loadfile keeps each file's tests on one
    # worker, in order (the pipeline modules edit one shared project in turn).
    python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist loadfile "$@" ;;
  *) echo "usage: ./run.sh repro|test|setup [args]" >&2; exit 2 ;;
esac
