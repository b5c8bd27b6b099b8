#!/usr/bin/env bash
# Install the project's Python packages into a venv: the one list of what the
# venv holds, used by scripts/setup.sh (with constraints.txt: exact versions)
# and scripts/lock.sh (without: the newest versions, then frozen).
#
#   scripts/install_requirements.sh VENV_PYTHON [CONSTRAINTS_FILE]
#
# 1. pip and setuptools (the build backend: the project is built with this
#    setuptools, --no-build-isolation, not with whatever the registry serves);
# 2. requirements-dev.txt and the project, editable, with its demo, test and
#    lint extras (pyproject.toml).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VPY=${1:?usage: scripts/install_requirements.sh VENV_PYTHON [CONSTRAINTS_FILE]}
CONSTRAINTS=${2:-}

pip_install=("$VPY" -m pip install -q --disable-pip-version-check)
[ -n "$CONSTRAINTS" ] && pip_install+=(-c "$CONSTRAINTS")
"${pip_install[@]}" --upgrade pip setuptools
"${pip_install[@]}" --no-build-isolation -r "$REPO/requirements-dev.txt" -e "$REPO[demo,test,lint]"
# 3. river, only for its data file river/datasets/yeast.csv.gz (examples/yeast; first shipped in
#    0.26.0). river's own requirements (numpy>=2.2.5) conflict with pycaffe's numpy<2 and none of
#    its code is used, so it is installed without dependencies, from a wheel (no Rust build).
"${pip_install[@]}" --no-deps --only-binary=:all: river==0.26.1
