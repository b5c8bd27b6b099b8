#!/usr/bin/env bash
# Find an existing Caffe (pycaffe + caffe binary) for USE_SYSTEM_CAFFE=1; build nothing.
#
#   scripts/find_system_caffe.sh PYTHON
#
# Checks that `import caffe` works in PYTHON and that caffe.layer_type_list()
# contains 'Python' (Caffe built with WITH_PYTHON_LAYER=1), then looks for the
# caffe binary: $CAFFE_BIN if set, else `caffe` or `caffe.bin` on PATH, else
# next to the pycaffe tree (<root>/build/tools/caffe.bin for a source build
# whose pycaffe is <root>/python). On success it prints three lines:
#   PYCAFFE_DIR=<folder holding the caffe package>
#   CAFFE_BIN=<caffe binary>
#   CAFFE_LIBDIR=<folder of libcaffe.so if the binary needs it found, else empty>
# On failure it says exactly what is missing, on stderr, and exits 1.
set -euo pipefail

PYTHON=${1:?usage: find_system_caffe.sh PYTHON}
REPO=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "[find_system_caffe] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON is not an executable Python (set PYTHON=/path/to/python)"

# Run outside the repo (so its folders do not shadow anything), with the
# caller's environment: a pycaffe found through PYTHONPATH counts too, since
# the venv gets a .pth file naming it and needs no PYTHONPATH later.
probe=$(cd / && "$PYTHON" - <<'PY' 2>&1
import os, sys
try:
    import caffe
except Exception as exc:
    print("IMPORT_FAILED %s: %s" % (type(exc).__name__, exc))
    sys.exit(0)
pkg = os.path.dirname(os.path.abspath(caffe.__file__))
if not hasattr(caffe, "layer_type_list"):
    print("NOT_PYCAFFE %s" % pkg)
    sys.exit(0)
print("PYCAFFE_DIR=%s" % os.path.dirname(pkg))
print("HAS_PYTHON_LAYER=%d" % ("Python" in caffe.layer_type_list()))
PY
) || true

case "$probe" in
  *IMPORT_FAILED*)
    die "USE_SYSTEM_CAFFE=1 but 'import caffe' fails in $PYTHON: ${probe##*IMPORT_FAILED }
  Make pycaffe importable in that Python first (e.g. PYTHONPATH=<caffe root>/python), or choose
  another interpreter with PYTHON=..., or drop USE_SYSTEM_CAFFE=1 to let 'make setup' build Caffe." ;;
  *NOT_PYCAFFE*)
    die "'import caffe' in $PYTHON finds ${probe##*NOT_PYCAFFE }, which is not pycaffe (no
  caffe.layer_type_list). It may be the empty PyPI package 'caffe': pip uninstall caffe." ;;
esac
PYCAFFE_DIR=$(printf '%s\n' "$probe" | sed -n 's/^PYCAFFE_DIR=//p')
HAS_PYTHON_LAYER=$(printf '%s\n' "$probe" | sed -n 's/^HAS_PYTHON_LAYER=//p')
[ -n "$PYCAFFE_DIR" ] || die "could not inspect pycaffe in $PYTHON; its output was: $probe"
[ "$HAS_PYTHON_LAYER" = 1 ] || die "pycaffe at $PYCAFFE_DIR/caffe was built without Python layers:
  'Python' is not in caffe.layer_type_list(). Rebuild that Caffe with WITH_PYTHON_LAYER := 1 in
  Makefile.config (or -DBUILD_python_layer=ON with CMake), or drop USE_SYSTEM_CAFFE=1."
log "pycaffe: $PYCAFFE_DIR/caffe (Python layers: yes)"

# The caffe binary. Never pick up our own wrapper (.venv/bin/caffe).
is_ours() { [ "$(readlink -f "$1")" = "$(readlink -f "$REPO/.venv/bin/caffe" 2>/dev/null || true)" ]; }
CAFFE_BIN_FOUND=""
if [ -n "${CAFFE_BIN:-}" ]; then
  [ -x "$CAFFE_BIN" ] || die "CAFFE_BIN=$CAFFE_BIN is not an executable file"
  CAFFE_BIN_FOUND=$CAFFE_BIN
else
  for name in caffe caffe.bin; do
    while IFS= read -r candidate; do
      [ -n "$candidate" ] && [ -x "$candidate" ] && ! is_ours "$candidate" && { CAFFE_BIN_FOUND=$candidate; break 2; }
    done < <(type -ap "$name" 2>/dev/null || true)
  done
  if [ -z "$CAFFE_BIN_FOUND" ]; then
    root=$(dirname "$PYCAFFE_DIR")
    for candidate in "$root/build/tools/caffe.bin" "$root/build/tools/caffe" "$root/bin/caffe" \
                     "$root/bin/caffe.bin" "$root/distribute/bin/caffe.bin"; do
      [ -x "$candidate" ] && { CAFFE_BIN_FOUND=$candidate; break; }
    done
  fi
fi
[ -n "$CAFFE_BIN_FOUND" ] || die "pycaffe works but no caffe binary was found: set CAFFE_BIN=/path/to/caffe
  (looked for caffe and caffe.bin on PATH and under $(dirname "$PYCAFFE_DIR")/{build/tools,bin,distribute/bin})."
CAFFE_BIN_FOUND=$(cd "$(dirname "$CAFFE_BIN_FOUND")" && pwd)/$(basename "$CAFFE_BIN_FOUND")

# A `caffe` on PATH may itself be a shell wrapper; only check an ELF binary's libraries.
CAFFE_LIBDIR=""
if head -c4 "$CAFFE_BIN_FOUND" | grep -q 'ELF'; then
  libs=$(ldd "$CAFFE_BIN_FOUND" 2>/dev/null || true)
  if printf '%s\n' "$libs" | grep -q 'libcaffe.*not found'; then
    for dir in "$(dirname "$PYCAFFE_DIR")/build/lib" "$(dirname "$CAFFE_BIN_FOUND")/../lib"; do
      ls "$dir"/libcaffe.so* >/dev/null 2>&1 && { CAFFE_LIBDIR=$(cd "$dir" && pwd); break; }
    done
    [ -n "$CAFFE_LIBDIR" ] || die "$CAFFE_BIN_FOUND needs libcaffe.so, which the loader cannot find and
  which is not in $(dirname "$PYCAFFE_DIR")/build/lib: add its folder to LD_LIBRARY_PATH."
  fi
  if ! printf '%s\n' "$libs" | grep -q 'libpython'; then
    libcaffe=$(printf '%s\n' "$libs" | sed -n 's/.*libcaffe[^ ]* => \([^ ]*\) .*/\1/p' | head -1)
    if [ -z "$libcaffe" ] || ! ldd "$libcaffe" 2>/dev/null | grep -q libpython; then
      log "WARNING: $CAFFE_BIN_FOUND does not seem to link libpython; if training fails with"
      log "  'Unknown layer type: Python', that binary was built without WITH_PYTHON_LAYER."
    fi
  fi
fi
log "caffe binary: $CAFFE_BIN_FOUND"
echo "PYCAFFE_DIR=$PYCAFFE_DIR"
echo "CAFFE_BIN=$CAFFE_BIN_FOUND"
echo "CAFFE_LIBDIR=$CAFFE_LIBDIR"
