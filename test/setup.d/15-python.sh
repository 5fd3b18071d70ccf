#!/usr/bin/env bash
# Debian's python3 with Jupyter's nbconvert/nbclient/ipykernel and cloudpickle, for the tests that run
# what pkg/preprocess generates (converted notebooks, the function shim, nbconvert-executed notebooks).
# up: install. down: nothing to stop. Exports nothing: the tests use /usr/bin/python3 and /usr/bin/jupyter
# (FAIRING_TEST_PYTHON overrides the interpreter).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
case "$1" in
up)
  need_pkgs python3 python3-nbconvert python3-nbclient python3-ipykernel jupyter-core jupyter-nbconvert python3-cloudpickle
  /usr/bin/python3 -c 'import nbconvert, nbclient, ipykernel, cloudpickle' \
    || { echo "python3 cannot import nbconvert/nbclient/ipykernel/cloudpickle after install" >&2; exit 1; }
  log "python3 $(/usr/bin/python3 -c 'import platform; print(platform.python_version())') with nbconvert ready"
  ;;
down) ;;
esac
