#!/usr/bin/env bash
# Build Caffe (CPU, Python layers, OpenCV, LMDB, LevelDB) from the brocolli-caffe sdist into a cache
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
  libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev
  libopencv-dev liblmdb-dev libleveldb-dev libsnappy-dev"

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
USE_OPENCV := 1
OPENCV_VERSION := 3
USE_LEVELDB := 1
USE_LMDB := 1
BLAS := open
BLAS_INCLUDE := /usr/include/x86_64-linux-gnu/openblas-pthread
WITH_PYTHON_LAYER := 1
PYTHON_LIBRARIES := boost_python$PY_TAG python$PY_VER
PYTHON_INCLUDE := $PY_INCLUDE $NP_INCLUDE
PYTHON_LIB := $PY_LIBDIR
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial /usr/include/opencv4
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/x86_64-linux-gnu/hdf5/serial
# The OpenCV patch: the tree uses OpenCV 3's C constant names (CV_LOAD_IMAGE_COLOR,
# CV_BGR2GRAY, CV_FILLED, CV_RGB, CV_CAP_PROP_*, CV_FOURCC), which OpenCV 4 keeps
# only in its legacy headers. Every C++ file gets those headers force-included;
# no source file is edited. OPENCV_VERSION 3 links imgcodecs and videoio, which
# OpenCV 4 also needs.
CXXFLAGS += -include opencv2/imgcodecs/legacy/constants_c.h -include opencv2/imgproc/imgproc_c.h -include opencv2/videoio/legacy/constants_c.h
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
FAILED_LOG=$CACHE_ROOT/build-failed.log
trap 'rm -rf "$WORK"' EXIT
log "building Caffe $CAFFE_SDIST==$CAFFE_VERSION in $WORK (3 to 10 minutes on 2 cores; cached afterwards)"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: "$CAFFE_SDIST==$CAFFE_VERSION" -d "$WORK/sdist" >&2
tar xzf "$WORK/sdist/$CAFFE_SDIST-$CAFFE_VERSION.tar.gz" -C "$WORK"
SRC="$WORK/$CAFFE_SDIST-$CAFFE_VERSION"
printf '%s\n' "$MAKEFILE_CONFIG" > "$SRC/Makefile.config"
# The sdist ships a caffe_pb2.py made by an old protoc that current Python
# protobuf rejects; delete it so make regenerates it with the system protoc.
rm -f "$SRC/python/caffe/proto/caffe_pb2.py"

# Progress: make prints one line per step (CXX, LD, PROTOC, ...); the total is
# what `make -n` would run. One status line at least every 30 s (rewritten in
# place on a terminal), with files done, elapsed time and an estimate.
TOTAL=$(cd "$SRC" && make -n all pycaffe 2>/dev/null | grep -cE '^echo (CXX|LD|AR|PROTOC|NVCC)' || true)
[ "${TOTAL:-0}" -gt 0 ] || TOTAL=0
BUILD_START=$SECONDS
(cd "$SRC" && make -j"$JOBS" all pycaffe >"$WORK/build.log" 2>&1) &
MAKE_PID=$!
progress() {
  local done elapsed eta=""
  done=$(grep -cE '^(CXX|LD|AR|PROTOC|NVCC)' "$WORK/build.log" 2>/dev/null || true)
  elapsed=$((SECONDS - BUILD_START))
  if [ "$TOTAL" -gt 0 ] && [ "$done" -gt 0 ]; then
    [ "$done" -gt "$TOTAL" ] && done=$TOTAL
    eta=", about $(( elapsed * (TOTAL - done) / done / 60 )) min $(( elapsed * (TOTAL - done) / done % 60 )) s left"
  fi
  printf '[install_caffe] compiling Caffe: %s/%s steps, %d min %02d s elapsed%s' \
    "$done" "$TOTAL" $((elapsed / 60)) $((elapsed % 60)) "$eta" >&2
}
last_line=$SECONDS
while kill -0 "$MAKE_PID" 2>/dev/null; do
  sleep 2
  if [ -t 2 ]; then
    printf '\r' >&2; progress; printf '\033[K' >&2
  elif [ $((SECONDS - last_line)) -ge 20 ]; then
    progress; printf '\n' >&2; last_line=$SECONDS
  fi
done
[ -t 2 ] && printf '\n' >&2
if ! wait "$MAKE_PID"; then
  cp "$WORK/build.log" "$FAILED_LOG"
  echo "----- last 40 lines of the build log -----" >&2
  tail -40 "$WORK/build.log" >&2
  log "ERROR: Caffe build failed after $((SECONDS - BUILD_START)) s; full log: $FAILED_LOG"
  exit 1
fi
ln -sfn .temp_release "$SRC/build"
cp "$WORK/build.log" "$SRC/build.log"
touch "$SRC/.complete"
rm -rf "$CAFFE_ROOT"
mv "$SRC" "$CAFFE_ROOT"
log "Caffe built in $((SECONDS - BUILD_START)) s: $CAFFE_ROOT"
echo "$CAFFE_ROOT"
