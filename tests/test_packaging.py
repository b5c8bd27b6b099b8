"""Packaging: pyproject.toml's metadata, `pip install .` into a venv that has a pycaffe, and the venv's
package versions against constraints.txt (what `make setup` installs and CI tested)."""
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import caffe
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import softmax_multilabel_layer

from caffe_nets import input_layer

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PURELIB = Path(sysconfig.get_paths()["purelib"])
IN_REPO_VENV = Path(sys.prefix).resolve() == (REPO / ".venv").resolve()
# Files that make the project installable (what an sdist would carry).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "softmax_multilabel_layer")


def requirement_name(requirement):
    """"numpy<2" -> "numpy", "protobuf>=3.20" -> "protobuf" (normalized)."""
    return canonicalize_name(Requirement(requirement).name)


def requirements():
    """Every requirement the venv is set up from: the project's dependencies, its extras, requirements-dev.txt."""
    lines = (REPO / "requirements-dev.txt").read_text().splitlines()
    extras = [r for group in PROJECT["optional-dependencies"].values() for r in group]
    return PROJECT["dependencies"] + extras + [line for line in lines if line.strip() and not line.startswith("#")]


def read_constraints(path):
    """constraints.txt -> {normalized name: version}; every line that is not a comment must be name==version."""
    pins = {}
    for number, text in enumerate(path.read_text().splitlines(), 1):
        line = text.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert [s.operator for s in specifiers] == ["=="] and not requirement.extras and not requirement.marker, (
            "%s:%d: expected name==version, got %r" % (path.name, number, line))
        name = canonicalize_name(requirement.name)
        assert name not in pins, "%s:%d: %s pinned twice" % (path.name, number, name)
        pins[name] = specifiers[0].version
    return pins


def test_metadata_states_what_is_tested():
    specifier = SpecifierSet(PROJECT["requires-python"])
    running = "%d.%d" % sys.version_info[:2]
    assert running in specifier, "requires-python %s excludes the Python CI runs (%s)" % (specifier, running)
    untested = [version for version in ("3.10", "3.12") if version in specifier]
    assert not untested, "requires-python %s admits Python %s, never tested" % (specifier, untested)
    for key in ("name", "description", "readme", "license", "dependencies"):
        assert PROJECT.get(key), "pyproject.toml [project] has no %s" % key
    assert PROJECT["dynamic"] == ["version"]
    assert set(PROJECT["optional-dependencies"]) >= {"demo", "test"}
    # The PyPI package named "caffe" is an empty placeholder: never a dependency.
    assert "caffe" not in [requirement_name(r) for r in requirements()]
    assert "version" not in (REPO / "setup.py").read_text(), "the version lives in softmax_multilabel_layer/__init__.py"


def test_entry_point_is_the_cli_main():
    (script,) = [ep for ep in importlib.metadata.entry_points(group="console_scripts")
                 if ep.name == "softmax-multilabel"]
    from softmax_multilabel_layer import cli
    assert script.load() is cli.main


def test_constraints_pin_every_requirement_exactly():
    pins = read_constraints(REPO / "constraints.txt")
    assert canonicalize_name(PROJECT["name"]) not in pins, "the project itself is not a constraint"
    assert "caffe" not in pins
    # The build tools too: make setup builds the project with the pinned setuptools.
    unpinned = sorted(({"pip", "setuptools"} | {requirement_name(r) for r in requirements()}) - set(pins))
    assert not unpinned, "constraints.txt does not pin %s; run make lock" % ", ".join(unpinned)
    assert pins["numpy"].startswith("1."), "pycaffe needs numpy 1.x, constraints.txt has %s" % pins["numpy"]


@pytest.mark.skipif(not IN_REPO_VENV and not os.environ.get("CI"),
                    reason="checks the repo's .venv (make test runs in it; CI never skips this)")
def test_installed_versions_match_constraints():
    pins = read_constraints(REPO / "constraints.txt")
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version
                 for dist in importlib.metadata.distributions(path=[str(PURELIB)])}
    assert installed.pop(canonicalize_name(PROJECT["name"]), None) == softmax_multilabel_layer.__version__
    wrong = ["%s %s (constraints.txt: %s)" % (n, v, pins[n]) for n, v in sorted(installed.items())
             if n in pins and pins[n] != v]
    extra = sorted(set(installed) - set(pins))
    missing = sorted(set(pins) - set(installed))
    assert not (wrong or extra or missing), (
        "%s differs from constraints.txt: versions %s; installed but not pinned %s; pinned but not installed %s. "
        "make setup installs the pins; make distclean setup starts afresh; make lock re-pins on purpose"
        % (PURELIB, wrong, extra, missing))


def test_pip_install_into_a_venv_with_pycaffe_gives_a_working_command(tmp_path):
    """A new venv that already has a pycaffe (and the packages pycaffe needs) plus `pip install .`: the
    softmax-multilabel command starts, reports Caffe, writes a layer and checks its gradient with that pycaffe.

    Offline: pip builds with the venv's setuptools (--no-build-isolation) and, with --no-index, must find
    numpy and protobuf already installed instead of downloading them.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The new venv's pycaffe: the one this test runs with. Its dependencies (numpy, protobuf, scikit-image...),
    # pip and setuptools: this venv's site-packages, as a plain path (its .pth files, among them the
    # editable install of this project, are not processed there).
    (site / "pycaffe.pth").write_text("%s\n%s\n" % (Path(caffe.__file__).resolve().parents[1], PURELIB))
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_CONSTRAINT")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", GLOG_minloglevel="2")

    def run(*command):
        result = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=tmp_path, env=env,
                                timeout=300)
        assert result.returncode == 0, "%s\n%s%s" % (" ".join(map(str, command)), result.stdout, result.stderr)
        return result.stdout

    run(python, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-cache-dir", source)
    command = venv / "bin" / "softmax-multilabel"
    assert command.is_file()
    version, caffe_line = run(command, "--version").splitlines()
    assert version == "softmax-multilabel %s" % softmax_multilabel_layer.__version__
    assert "with Python layers" in caffe_line and str(Path(caffe.__file__).parent) in caffe_line, caffe_line
    where, metadata_version = run(python, "-c", "import importlib.metadata, softmax_multilabel_layer as s; "
                                  "print(s.__file__); print(importlib.metadata.version('softmax_multilabel_layer'))"
                                  ).splitlines()
    assert Path(where).parent == site / "softmax_multilabel_layer", "imported %s, not the installed copy" % where
    assert metadata_version == softmax_multilabel_layer.__version__, "version is read from __init__.py"

    layer = run(command, "prototxt", "--loss", "softmax")
    net = tmp_path / "net.prototxt"
    net.write_text(input_layer("scores", (4, 6)) + input_layer("labels", (4, 6)) + layer)
    report = run(command, "gradcheck", net, "--layer", "loss", "--fill", "labels=bernoulli:0.5")
    assert "gradient check PASSED" in report
