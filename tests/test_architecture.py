"""Checks of the layering that import-linter cannot express (docs/architecture.md): examples stand alone, and no
private name (``_x``) is imported across a module boundary."""
import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PACKAGE = ROOT / "softmax_multilabel_layer"


def imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of every module a file imports (inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def sys_path_edits(tree: ast.AST) -> list[int]:
    """Lines that change sys.path (sys.path.insert / append / extend / assignment)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            lines.append(node.lineno)
    return lines


def test_examples_use_only_the_package_and_their_own_files():
    modules = {path.stem: path.parent.name for path in EXAMPLES.glob("*/*.py")}
    assert len(set(modules.values())) >= 6                   # every example folder is seen
    problems = []
    for path in sorted(EXAMPLES.glob("*/*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = os.path.relpath(path, ROOT)
        problems += ["%s:%d: sys.path" % (rel, line) for line in sys_path_edits(tree)]
        problems += ["%s: imports %s from examples/%s" % (rel, name, modules[name])
                     for name in sorted(imported_modules(tree)) if modules.get(name, path.parent.name)
                     != path.parent.name]
    assert problems == []


def test_the_checks_see_what_they_forbid():
    tree = ast.parse("import sys\nsys.path.insert(0, 'x')\ndef f():\n    from digits_train import REPO\n")
    assert sys_path_edits(tree) == [2] and "digits_train" in imported_modules(tree)


def private_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every ``from x import _name`` (dunder names aside), inside functions too."""
    return [(node.lineno, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]


def test_no_private_name_imported_across_modules():
    problems = []
    for folder in (PACKAGE, EXAMPLES, ROOT / "scripts"):
        for path in sorted(folder.rglob("*.py")):
            rel = os.path.relpath(path, ROOT)
            problems += ["%s:%d: imports %s" % (rel, line, name)
                         for line, name in private_imports(ast.parse(path.read_text(), str(path)))]
    assert problems == []
    assert private_imports(ast.parse("def f():\n    from m import _x, __version__, y\n")) == [(2, "_x")]
