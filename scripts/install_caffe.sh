#!/usr/bin/env bash
# Build Caffe (CPU, Python layers) from the brocolli-caffe sdist into a cache
# outside the work tree, and print the cached Caffe root on the last line.
#
#   scripts/install_caffe.sh PYTHON [--print-root]
#
# With --print-root it only prints where the cached Caffe root for PYTHON is
# (or would be) and changes nothing.
#
# PYTHON is the interpreter pycaffe is built for (its headers, libpython and
# numpy are compiled in). The cache lives under $CAFFE_CACHE_DIR (default
# ~/.cache/softmax_multilabel_layer), one folder per version and build config.
# A build happens in a temporary folder and is renamed into place only when it
# is complete, so an interrupted build is never reused.
set -euo pipefail

PYTHON=${1:?usage: install_caffe.sh PYTHON [--print-root]}
PRINT_ROOT_ONLY=0
[ "${2:-}" = "--print-root" ] && PRINT_ROOT_ONLY=1
CAFFE_SDIST=brocolli-caffe
CAFFE_VERSION=9.0.2
CACHE_ROOT=${CAFFE_CACHE_DIR:-$HOME/.cache/softmax_multilabel_layer}
JOBS=${JOBS:-$(nproc)}
APT_PACKAGES="build-essential libboost-system-dev libboost-thread-dev libboost-filesystem-dev
  libboost-regex-dev libboost-python-dev libprotobuf-dev protobuf-compiler
  libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev"

log() { echo "[install_caffe] $*" >&2; }

install_apt_packages() {
  local missing=()
  for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && { log "Debian packages: all present"; return; }
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "ERROR: not root and no sudo; install: ${missing[*]}"; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

[ "$PRINT_ROOT_ONLY" = 1 ] || install_apt_packages

# Everything compiled into the build goes into the cache key.
PY_INCLUDE=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
PY_LIBDIR=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
PY_VER=$("$PYTHON" -c "import sys; print('%d.%d' % sys.version_info[:2])")
PY_TAG=${PY_VER/./}
NP_INCLUDE=$("$PYTHON" -c "import numpy; print(numpy.get_include())")
NP_VER=$("$PYTHON" -c "import numpy; print(numpy.__version__)")
case "$NP_VER" in 1.*) ;; *) log "ERROR: pycaffe needs numpy<2, $PYTHON has numpy $NP_VER"; exit 1;; esac

MAKEFILE_CONFIG=$(cat <<CFG
CPU_ONLY := 1
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 0
BLAS := open
BLAS_INCLUDE := /usr/include/x86_64-linux-gnu/openblas-pthread
WITH_PYTHON_LAYER := 1
PYTHON_LIBRARIES := boost_python$PY_TAG python$PY_VER
PYTHON_INCLUDE := $PY_INCLUDE $NP_INCLUDE
PYTHON_LIB := $PY_LIBDIR
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/x86_64-linux-gnu/hdf5/serial
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CFG
)
# The numpy include folder lives inside the venv, whose path differs between
# clones (CI uses a fresh clone each run); numpy's major.minor stands for it.
KEY_CONFIG=${MAKEFILE_CONFIG//"$NP_INCLUDE"/<numpy-include>}
KEY=$(printf '%s\nnumpy %s\n' "$KEY_CONFIG" "${NP_VER%.*}" | sha256sum | cut -c1-12)
CAFFE_ROOT="$CACHE_ROOT/caffe-$CAFFE_SDIST-$CAFFE_VERSION-py$PY_TAG-$KEY"
[ "$PRINT_ROOT_ONLY" = 1 ] && { echo "$CAFFE_ROOT"; exit 0; }

if [ -f "$CAFFE_ROOT/.complete" ]; then
  log "reusing cached Caffe: $CAFFE_ROOT"
  echo "$CAFFE_ROOT"
  exit 0
fi

mkdir -p "$CACHE_ROOT"
WORK=$(mktemp -d "$CACHE_ROOT/.building-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "building Caffe $CAFFE_SDIST==$CAFFE_VERSION in $WORK (3 to 8 minutes on 2 cores)"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: "$CAFFE_SDIST==$CAFFE_VERSION" -d "$WORK/sdist" >&2
tar xzf "$WORK/sdist/$CAFFE_SDIST-$CAFFE_VERSION.tar.gz" -C "$WORK"
SRC="$WORK/$CAFFE_SDIST-$CAFFE_VERSION"
printf '%s\n' "$MAKEFILE_CONFIG" > "$SRC/Makefile.config"
# The sdist ships a caffe_pb2.py made by an old protoc that current Python
# protobuf rejects; delete it so make regenerates it with the system protoc.
rm -f "$SRC/python/caffe/proto/caffe_pb2.py"
(cd "$SRC" && make -j"$JOBS" all pycaffe >"$WORK/build.log" 2>&1) || {
  tail -40 "$WORK/build.log" >&2; log "ERROR: Caffe build failed (log above)"; exit 1; }
ln -sfn .temp_release "$SRC/build"
cp "$WORK/build.log" "$SRC/build.log"
touch "$SRC/.complete"
rm -rf "$CAFFE_ROOT"
mv "$SRC" "$CAFFE_ROOT"
log "Caffe built: $CAFFE_ROOT"
echo "$CAFFE_ROOT"
