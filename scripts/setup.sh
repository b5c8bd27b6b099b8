#!/usr/bin/env bash
# One-command set-up, run by `make setup`. Idempotent; takes seconds when warm.
#
#   [PYTHON=python3] [USE_SYSTEM_CAFFE=1|0] [CAFFE_BIN=...] scripts/setup.sh
#
# USE_SYSTEM_CAFFE left unset keeps what the last set-up of .venv used
# (recorded in .venv/.use-system-caffe); the first default is 0 (build).
#
# 1. creates .venv (PYTHON -m venv) if it is missing;
# 2. pip-installs (scripts/install_requirements.sh) pip, setuptools,
#    requirements-dev.txt and the project (editable, with its demo, test and
#    lint extras), at the exact versions of constraints.txt; skipped when
#    .venv/.requirements-stamp shows those files and the Python are unchanged;
# 3. gets Caffe: builds it into the cache (scripts/install_caffe.sh, reused
#    when present) or, with USE_SYSTEM_CAFFE=1, finds an existing one
#    (scripts/find_system_caffe.sh);
# 4. writes .venv/lib/pythonX.Y/site-packages/softmax_multilabel_layer_pycaffe.pth
#    naming the folder that holds pycaffe (nothing is copied);
# 5. writes .venv/bin/caffe, a wrapper that runs the caffe binary with this
#    venv's Python, the repo and pycaffe on PYTHONPATH and libcaffe on
#    LD_LIBRARY_PATH, and the same for convert_imageset, compute_image_mean,
#    extract_features and upgrade_net_proto_text;
# 6. checks that `import caffe` works in the venv with Python layers, and that
#    the wrapper starts; then writes .venv/.setup-done (what the Makefile
#    targets depend on). It prints which optional features (Python layers,
#    OpenCV, LMDB, LevelDB) the Caffe has.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
PYTHON_GIVEN=${PYTHON:-}
PYTHON=${PYTHON:-python3}
VENV=$REPO/.venv
# USE_SYSTEM_CAFFE unset: keep the choice of the last set-up of this venv.
USE_SYSTEM_CAFFE=${USE_SYSTEM_CAFFE:-$(cat "$VENV/.use-system-caffe" 2>/dev/null || echo 0)}
[ "$USE_SYSTEM_CAFFE" = 1 ] || USE_SYSTEM_CAFFE=0
STAMP=$VENV/.setup-done
START=$SECONDS

log() { echo "[setup] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A PYTHONHOME from the caller would make Python ignore the venv.
unset PYTHONHOME
rm -f "$STAMP"

# 1. venv
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON not found; set PYTHON=/path/to/python3"
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
VPY=$VENV/bin/python
# pyproject.toml's requires-python: only 3.11 is tested.
if ! "$VPY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  die "$VPY is Python $("$VPY" -c 'import platform; print(platform.python_version())'); only 3.11 is tested and
  admitted (pyproject.toml requires-python): make distclean, then make setup PYTHON=python3.11"
fi

# 2. requirements + editable install, every version pinned by constraints.txt
# (a fresh machine gets what CI tested; `make lock` refreshes the pins).
REQ_STAMP=$VENV/.requirements-stamp
req_hash=$( { cat requirements-dev.txt constraints.txt pyproject.toml setup.py scripts/install_requirements.sh
              "$VPY" -VV; } | sha256sum | cut -c1-16)
if [ "$(cat "$REQ_STAMP" 2>/dev/null || true)" != "$req_hash" ]; then
  log "installing requirements-dev.txt and softmax_multilabel_layer[demo,test,lint] (editable) at the versions of constraints.txt"
  scripts/install_requirements.sh "$VPY" constraints.txt
  echo "$req_hash" > "$REQ_STAMP"
else
  log "requirements unchanged (.venv/.requirements-stamp); pip skipped"
fi
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PY_LIBDIR=$("$VPY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')

# 3. Caffe
if [ "$USE_SYSTEM_CAFFE" = 1 ]; then
  # Without PYTHON given, a venv already set up this way finds its pycaffe
  # through our .pth file, so it does not depend on the caller's PYTHONPATH.
  probe_python=$PYTHON
  [ -z "$PYTHON_GIVEN" ] && [ -f "$SITE/softmax_multilabel_layer_pycaffe.pth" ] && probe_python=$VPY
  log "USE_SYSTEM_CAFFE=1: looking for an existing Caffe for $probe_python (nothing is built)"
  found=$(scripts/find_system_caffe.sh "$probe_python")
  PYCAFFE_DIR=$(printf '%s\n' "$found" | sed -n 's/^PYCAFFE_DIR=//p')
  CAFFE_BINARY=$(printf '%s\n' "$found" | sed -n 's/^CAFFE_BIN=//p')
  CAFFE_LIBDIR=$(printf '%s\n' "$found" | sed -n 's/^CAFFE_LIBDIR=//p')
else
  CAFFE_ROOT=$(scripts/install_caffe.sh "$VPY" | tail -n 1)
  [ -d "$CAFFE_ROOT" ] || die "scripts/install_caffe.sh did not print a Caffe root (got '$CAFFE_ROOT')"
  PYCAFFE_DIR=$CAFFE_ROOT/python
  CAFFE_BINARY=$CAFFE_ROOT/build/tools/caffe.bin
  CAFFE_LIBDIR=$CAFFE_ROOT/build/lib
fi
[ -d "$PYCAFFE_DIR/caffe" ] || die "no pycaffe package at $PYCAFFE_DIR/caffe"
[ -x "$CAFFE_BINARY" ] || die "no caffe binary at $CAFFE_BINARY"

# 4. .pth file: the venv imports pycaffe from where it was built.
PTH=$SITE/softmax_multilabel_layer_pycaffe.pth
if [ "$(cat "$PTH" 2>/dev/null || true)" != "$PYCAFFE_DIR" ]; then
  printf '%s\n' "$PYCAFFE_DIR" > "$PTH"
  log "wrote $PTH -> $PYCAFFE_DIR"
fi

# 5. .venv/bin/caffe wrapper.
# caffe.bin embeds Python (Py_Initialize with the default program name
# "python3"), which finds its prefix by looking "python3" up on PATH: with
# .venv/bin first it starts as this venv (site-packages, .pth files). PYTHONPATH
# also names the repo, pycaffe and the venv site-packages, so the imports work
# even if that lookup changes. PYTHONHOME is not set: it would hide the venv.
# The venv's libpython folder goes on LD_LIBRARY_PATH so the binary loads the
# same libpython as the venv's python (not another Python's of the same version).
ld_path=$CAFFE_LIBDIR
[ -n "$PY_LIBDIR" ] && [ -e "$PY_LIBDIR/libpython$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])').so.1.0" ] \
  && ld_path=${ld_path:+$ld_path:}$PY_LIBDIR
# write_wrapper NAME BINARY: .venv/bin/NAME runs BINARY in this environment.
write_wrapper() {
  local wrapper=$VENV/bin/$1 binary=$2 content
  content=$(cat <<EOF
#!/usr/bin/env bash
# Generated by scripts/setup.sh (make setup); do not edit, re-run make setup.
# Runs Caffe's $1 with this project's Python environment (so prototxts can use
# python_param { module: "softmax_multilabel_layer.layers" }) and libcaffe found.
export PATH=$(printf '%q' "$VENV/bin")\${PATH:+:\$PATH}
export PYTHONPATH=$(printf '%q' "$REPO:$PYCAFFE_DIR:$SITE")\${PYTHONPATH:+:\$PYTHONPATH}
export LD_LIBRARY_PATH=$(printf '%q' "$ld_path")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
unset PYTHONHOME
exec $(printf '%q' "$binary") "\$@"
EOF
)
  if [ "$(cat "$wrapper" 2>/dev/null || true)" != "$content" ]; then
    printf '%s\n' "$content" > "$wrapper"
    chmod +x "$wrapper"
    log "wrote $wrapper -> $binary"
  fi
  WRAPPERS+=("$wrapper")
}
WRAPPERS=()
WRAPPER=$VENV/bin/caffe
write_wrapper caffe "$CAFFE_BINARY"
# Caffe's other tools, found next to the caffe binary (NAME.bin or NAME).
for tool in convert_imageset compute_image_mean extract_features upgrade_net_proto_text; do
  tool_bin=""
  for candidate in "$(dirname "$CAFFE_BINARY")/$tool.bin" "$(dirname "$CAFFE_BINARY")/$tool"; do
    [ -x "$candidate" ] && [ -f "$candidate" ] && { tool_bin=$candidate; break; }
  done
  if [ -n "$tool_bin" ]; then
    write_wrapper "$tool" "$tool_bin"
  elif [ "$USE_SYSTEM_CAFFE" = 1 ]; then
    log "note: no $tool next to $CAFFE_BINARY; .venv/bin/$tool not written"
  else
    die "the Caffe build has no $tool at $(dirname "$CAFFE_BINARY")"
  fi
done

# 6. checks, run from / without PYTHONPATH (the venv must do without it) and,
# for the Caffe we build, without LD_LIBRARY_PATH (rpaths must do).
clean_env=(env -u PYTHONPATH)
[ "$USE_SYSTEM_CAFFE" = 1 ] || clean_env+=(-u LD_LIBRARY_PATH)
check=$(cd / && "${clean_env[@]}" "$VPY" - <<'PY' 2>&1
import importlib.util, sys
try:
    import caffe
except Exception as exc:
    print("import caffe failed in the venv: %s: %s" % (type(exc).__name__, exc)); sys.exit(1)
if "Python" not in caffe.layer_type_list():
    print("pycaffe at %s has no 'Python' layer type (built without WITH_PYTHON_LAYER)" % caffe.__file__); sys.exit(1)
if importlib.util.find_spec("softmax_multilabel_layer") is None:
    print("softmax_multilabel_layer is not importable from the venv"); sys.exit(1)
print("ok: pycaffe %s" % caffe.__file__)
PY
) || die "$check"
log "$check"
# Which optional features that Caffe has (Python layers, OpenCV, LMDB, LevelDB).
features=$(cd / && "${clean_env[@]}" "$VPY" -m softmax_multilabel_layer.tools.caffe_features 2>&1) \
  || die "could not list the Caffe's features: $features"
printf '%s\n' "$features" | sed 's/^/[setup] /' >&2
(cd / && "${clean_env[@]}" "$WRAPPER" --version >/dev/null 2>&1) \
  || die "$WRAPPER does not start; run it by hand to see why: $WRAPPER --version"

echo "$USE_SYSTEM_CAFFE" > "$VENV/.use-system-caffe"
{ printf '%s\n' "${WRAPPERS[@]}"; echo "$CAFFE_BINARY"; echo "$PYCAFFE_DIR/caffe"; echo "$PTH"; } > "$STAMP"
log "done in $((SECONDS - START)) s: .venv ready, caffe wrapper at .venv/bin/caffe"
