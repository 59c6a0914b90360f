"""Every command printed in README.md and docs/*.md parses as printed.

Commands are taken from fenced ``bash`` blocks and from inline code spans that start
with ``python -m`` or ``python benchmarks/``. Each is run as its module's ``__main__``
up to its argument parsing (``ArgumentParser.parse_args`` is stopped right after it
succeeds), so a renamed module, flag or choice in the docs fails here. Running them for
real: the README's main job (``tests/test_main_job.py``, also the Python API example)
and the Dataflow commands (``tests/beam/test_dataflow_options.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Not ours to check (installers, the test runner, containers, shell) or synopsis lines.
SKIPPED_PROGRAMS = ("pip", "venv", "pytest", "docker", "cp", "tar", "gcloud", "dask")


def doc_commands(text: str) -> list[str]:
    """Shell commands of a Markdown text: lines of fenced bash blocks (continuations
    joined, ``&&`` chains split, comments dropped) and inline ``python ...`` spans."""
    found = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found += [part.split(" #", 1)[0].strip() for part in line.split("&&")]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [" ".join(m.group(1).split())
              for m in re.finditer(r"`(python\s+(?:-m\s+[\w.]+|benchmarks/\w+\.py)[^`]*)`", prose)]
    return found


def python_argv(command: str) -> tuple[str, str, list[str]] | None:
    """``("module" | "script", target, args)`` of a python command we can check, else None."""
    words = shlex.split(command)
    if not words or not re.search(r"(^|/)python3?$", words[0]):
        return None
    if "|" in command or "[" in command or "..." in command:  # a synopsis, not a command
        return None
    if words[1:2] == ["-m"]:
        target = words[2]
        if target.split(".")[0] not in ("tags_tf", "beam", "serving"):
            return None
        return "module", target, words[3:]
    if words[1].startswith("benchmarks/") and words[1].endswith(".py"):
        return "script", words[1], words[2:]
    return None


class _Parsed(Exception):
    pass


def parse_as_printed(kind: str, target: str, args: list[str], monkeypatch) -> argparse.Namespace:
    """Runs ``target`` as ``__main__`` with ``args`` until its arguments are parsed."""
    known = argparse.ArgumentParser.parse_known_args

    def parse_and_stop(self, argv=None, namespace=None):  # parse_args, then stop
        args, extras = known(self, argv, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        raise _Parsed(args)

    def parse_known_and_stop(self, argv=None, namespace=None):  # the Beam jobs: the rest is Beam's
        raise _Parsed(known(self, argv, namespace)[0])

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", parse_known_and_stop)
    monkeypatch.setattr(sys, "argv", [target, *args])
    environ = dict(os.environ)
    try:
        if kind == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(str(REPO / target), run_name="__main__")
    except _Parsed as parsed:
        return parsed.args[0]
    finally:  # a CLI may set TF_ENABLE_ONEDNN_OPTS etc. before TensorFlow loads
        os.environ.clear()
        os.environ.update(environ)
    raise AssertionError(f"{target} returned without parsing its arguments")


ALL = [(path.relative_to(REPO).as_posix(), c) for path in DOCS for c in doc_commands(path.read_text(encoding="utf-8"))]
CHECKED = [(where, c) for where, c in ALL if python_argv(c) is not None]


def test_the_docs_hold_the_commands_we_check():
    assert len(DOCS) >= 8 and any(p.name == "README.md" for p in DOCS)
    assert len(CHECKED) >= 25, CHECKED
    unchecked = [c for _, c in ALL if python_argv(c) is None]
    # Everything left out is an installer/test-runner/shell line or a synopsis.
    for command in unchecked:
        words = shlex.split(command)
        assert (any(p in command.split()[0] or p in words[:3] for p in SKIPPED_PROGRAMS)
                or "|" in command or "[" in command or "..." in command
                or words[1:3] == ["-m", "pytest"] or not words[0].startswith(("python", ".venv"))), command


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy of an imported CLI
@pytest.mark.parametrize("where,command", CHECKED, ids=[f"{w}:{c[:60]}" for w, c in CHECKED])
def test_command_parses_as_printed(where, command, monkeypatch):
    kind, target, args = python_argv(command)
    try:
        parse_as_printed(kind, target, args, monkeypatch)
    except SystemExit as e:
        pytest.fail(f"{where}: `{command}` does not parse (exit {e.code})")


def test_a_wrong_flag_in_the_docs_would_fail(monkeypatch):
    with pytest.raises(SystemExit):
        parse_as_printed("module", "tags_tf.evaluate",
                         ["--predictions", "r.json", "--ground-truth", "g.json", "--subset", "test", "--no-such-flag"], monkeypatch)
    with pytest.raises(SystemExit):
        parse_as_printed("module", "tags_tf.train", ["--dataset", "demo", "--set"], monkeypatch)
    assert parse_as_printed("module", "tags_tf.evaluate", ["--predictions", "r.json", "--ground-truth", "g.json", "--subset", "test"],
                            monkeypatch).predictions == "r.json"
    assert python_argv("python -m tags_tf.train --dataset anet|thumos") is None
    assert doc_commands("x\n```bash\npython -m a.b --x 1 \\\n  --y 2 && python -m c\n```\n`python -m d --z`") == [
        "python -m a.b --x 1    --y 2", "python -m c", "python -m d --z"]
