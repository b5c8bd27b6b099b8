"""Every command a user is told to run answers --help: the CLI, each of its subcommands, every example script
and every script under scripts/ (issue 31: `run_demo.py --help` once crashed on a '%' in a help string)."""
import glob
import os
import pathlib
import subprocess
import sys

import pytest

from softmax_multilabel_layer.cli import build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(p for p in glob.glob(os.path.join(ROOT, "examples", "*", "*.py"))
                 + glob.glob(os.path.join(ROOT, "scripts", "*.py"))
                 if "__main__" in pathlib.Path(p).read_text())


def subcommands():
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    assert isinstance(action.choices, dict)
    return sorted(action.choices)


def test_scripts_were_found():
    names = {os.path.relpath(p, ROOT) for p in SCRIPTS}
    assert {"examples/multilabel_digits/run_demo.py", "examples/yeast/run_yeast.py", "scripts/benchmark.py"} <= names


@pytest.fixture(scope="module")
def script_helps():
    """--help of every script, run side by side (each is its own interpreter)."""
    procs = {p: subprocess.Popen([sys.executable, p, "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for p in SCRIPTS}
    results = {}
    for p, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        results[p] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("script", [os.path.relpath(p, ROOT) for p in SCRIPTS])
def test_every_script_answers_help(script_helps, script):
    code, out, err = script_helps[os.path.join(ROOT, script)]
    assert code == 0, err
    assert out.startswith("usage: %s" % os.path.basename(script)), out[:200]
    assert "Traceback" not in err


def test_top_level_help_names_every_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    names = subcommands()
    assert {"convert", "deploy", "evaluate", "gradcheck", "predict", "prototxt"} <= set(names)
    # The description names every command (argparse's own list would name them even if the prose did not),
    # and the examples show each one.
    parser = build_parser()
    assert parser.description and parser.description in " ".join(out.split())
    assert [n for n in names if n not in parser.description] == []
    examples = out.split("examples:", 1)[1]
    assert [n for n in names if "softmax-multilabel %s " % n not in examples] == []


@pytest.mark.parametrize("command", ["convert", "deploy", "evaluate", "gradcheck", "predict", "prototxt"])
def test_every_subcommand_answers_help(capsys, command):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: softmax-multilabel %s" % command)
