"""The shell and Python snippets of README.md, docs/ and the examples' READMEs, run as a user would run them.

Every ```sh and ```python block is run, unless the line before it says why not::

    <!-- snippet: skip REASON -->       (a template with the user's own files, a set-up step, minutes of training)

and ``<!-- snippet: prints REGEX -->`` there also checks what the block prints. Blocks run in a fresh folder
that links the repository's top-level entries (so ``.venv/bin/...`` and ``prototxt/...`` resolve and whatever a
snippet writes stays in the folder), with ``.venv/bin`` first on PATH. Python blocks stand for code in a user's
program: they run after a prelude that defines the arrays the docs call ``scores``, ``labels`` (8 x 5 float32,
every row with a positive) and ``images`` (8 x 3 x 4 x 4), seed 0. The inline ``.venv/bin/python -c "..."``
commands of the text are run too.
"""
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from glob import glob

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob(os.path.join(REPO, "docs", "*.md"))) + sorted(
    os.path.relpath(p, REPO) for p in glob(os.path.join(REPO, "examples", "*", "README.md")))
MARK = re.compile(r"^<!-- snippet: (skip|prints) (.+?) -->$")
INLINE = re.compile(r'`(\.venv/bin/python -c "[^"`]+")`')
PRELUDE = """import numpy as np
_rng = np.random.default_rng(0)
scores = _rng.standard_normal((8, 5)).astype(np.float32)
labels = (_rng.random((8, 5)) < 0.4).astype(np.float32)
labels[:, 0] = 1
images = _rng.random((8, 3, 4, 4)).astype(np.float32)
"""


@dataclass
class Snippet:
    path: str
    line: int
    lang: str
    code: str
    skip: str = ""
    prints: str = ""

    @property
    def name(self) -> str:
        return "%s:%d" % (self.path, self.line)


def snippets() -> list[Snippet]:
    found = []
    for path in DOCS:
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            fence = re.match(r"^```(sh|python)\s*$", lines[i])
            if fence:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                snippet = Snippet(path, i + 1, fence.group(1), "\n".join(lines[i + 1:end]))
                mark = MARK.match(lines[i - 1].strip()) if i else None
                if mark:
                    setattr(snippet, mark.group(1), mark.group(2))
                found.append(snippet)
                i = end
            else:
                for m in INLINE.finditer(lines[i]):
                    found.append(Snippet(path, i + 1, "sh", m.group(1)))
            i += 1
    return found


SNIPPETS = snippets()
RUN = [s for s in SNIPPETS if not s.skip]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snippets")
    for entry in os.listdir(REPO):
        if entry not in (".git", "output"):
            os.symlink(os.path.join(REPO, entry), folder / entry)
    return folder


def test_snippets_found_and_each_skip_says_why():
    print("doc snippets: %d run, %d skipped" % (len(RUN), len(SNIPPETS) - len(RUN)))
    assert len(RUN) >= 10
    for s in SNIPPETS:
        if s.skip:
            assert len(s.skip.split()) >= 3, "%s: a skipped snippet says why in a few words" % s.name


@pytest.mark.parametrize("snippet", RUN, ids=[s.name for s in RUN])
def test_snippet_runs(snippet, sandbox):
    env = dict(os.environ, PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""),
               GLOG_minloglevel="2", OPENBLAS_NUM_THREADS="1")
    if snippet.lang == "python":
        cmd = [sys.executable, "-c", PRELUDE + snippet.code]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", snippet.code]
    done = subprocess.run(cmd, cwd=sandbox, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, "%s exited %d:\n%s%s" % (snippet.name, done.returncode, done.stdout, done.stderr)
    if snippet.prints:
        assert re.search(snippet.prints, done.stdout), "%s printed:\n%s" % (snippet.name, done.stdout)
