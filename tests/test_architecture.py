"""Dependency direction, checked statically (``ast``; nothing is imported, no TensorFlow).

The library sits below its applications: ``tags_tf`` never imports ``beam``, ``serving``,
``tests`` or ``benchmarks``, except in its command-line mains (``tags_tf/train.py``,
``tags_tf/evaluate.py``), where the packages meet. ``beam`` and ``serving`` never import
``tests`` or ``benchmarks``; ``benchmarks`` never import ``tests``, and no test module
imports another (shared helpers: ``tags_tf/testing.py``). Imports inside functions count
as much as top-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The CLIs of tags_tf: they compose the library with beam (demo shards) and serving (export).
CLI_MODULES = frozenset({"tags_tf/train.py", "tags_tf/evaluate.py"})
ABOVE_THE_LIBRARY = frozenset({"beam", "serving", "tests", "benchmarks"})
ABOVE_THE_APPLICATIONS = frozenset({"tests", "benchmarks"})


def imported_modules(source: str, filename: str = "<string>", package: str = "") -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in ``source``, nested ones included.

    ``import a.b`` and ``from a.b import c`` give ``a.b``; relative imports are resolved
    against ``package`` (the importing module's package); ``importlib.import_module("a.b")``
    and ``__import__("a.b")`` with a literal name count as imports of ``a.b``.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = parts[: len(parts) - (node.level - 1)]  # level 1: the package itself
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return sorted(found)


def forbidden_imports(source: str, filename: str, forbidden: frozenset[str], package: str = "") -> list[str]:
    """``"filename:line imports name"`` for every import of a package in ``forbidden``."""
    return [
        f"{filename}:{line} imports {name}"
        for line, name in imported_modules(source, filename, package)
        if name.split(".")[0] in forbidden
    ]


def violations(root: Path, package_dir: str, forbidden: frozenset[str], exempt=frozenset()) -> list[str]:
    """Forbidden imports of every module under ``root/package_dir`` (paths relative to ``root``)."""
    out = []
    for path in sorted((root / package_dir).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in exempt or "__pycache__" in path.parts:
            continue
        package = ".".join(path.relative_to(root).parent.parts)  # of a module and of an __init__.py alike
        out += forbidden_imports(path.read_text(encoding="utf-8"), rel, forbidden, package)
    return out


def test_library_never_imports_its_applications():
    found = violations(REPO, "tags_tf", ABOVE_THE_LIBRARY, exempt=CLI_MODULES)
    assert not found, (
        "tags_tf sits below beam/serving/tests/benchmarks; pass what it needs in from a CLI "
        "(tags_tf/train.py, tags_tf/evaluate.py) instead:\n  " + "\n  ".join(found)
    )


@pytest.mark.parametrize("package_dir", ["beam", "serving"])
def test_applications_never_import_tests_or_benchmarks(package_dir):
    found = violations(REPO, package_dir, ABOVE_THE_APPLICATIONS)
    assert not found, "\n  ".join(["imports of tests/benchmarks:", *found])


def test_benchmarks_never_import_tests():
    found = violations(REPO, "benchmarks", frozenset({"tests"}))
    assert not found, "\n  ".join(["benchmarks share helpers through tags_tf/testing.py, not tests/:", *found])


def imports_of_test_modules(source: str, filename: str, package: str) -> list[str]:
    """``"filename:line imports name"`` for every import of a ``test_*`` module of
    ``tests``: ``import tests.x.test_y``, ``from tests.x.test_y import f`` and
    ``from tests.x import test_y`` alike (relative imports resolved against ``package``)."""
    names = imported_modules(source, filename, package)
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom):  # from tests.x import test_y: the module tests.x.test_y
            [(_, module)] = imported_modules(ast.unparse(node), filename, package)
            names += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name.startswith("test_")]
    return [
        f"{filename}:{line} imports {name}"
        for line, name in sorted(set(names))
        if name.split(".")[0] == "tests" and any(part.startswith("test_") for part in name.split(".")[1:])
    ]


def test_test_modules_never_import_each_other():
    """Shared helpers live in tags_tf/testing.py (also for benchmarks) or in tests/ helper
    modules and conftest.py, never in a test_*.py another test imports. The whole tests/
    tree is checked (it mirrors the package: tests/tags_tf/data/, tests/beam/, ...)."""
    paths = sorted(path for path in (REPO / "tests").rglob("*.py") if "__pycache__" not in path.parts)
    assert len([p for p in paths if p.parent != REPO / "tests"]) > 10  # the subfolders are walked
    found = []
    for path in paths:
        rel = path.relative_to(REPO)
        found += imports_of_test_modules(path.read_text(encoding="utf-8"), rel.as_posix(), ".".join(rel.parent.parts))
    assert not found, "\n  ".join(["test modules importing test modules:", *found])


def test_the_cli_exemptions_name_real_modules():
    # A renamed CLI must not leave a stale exemption (or silently lose its own check).
    assert all((REPO / rel).is_file() for rel in CLI_MODULES)
    assert (REPO / "tags_tf" / "training" / "trainer.py").is_file() and "tags_tf/training/trainer.py" not in CLI_MODULES


BAD_MODULE = '''\
"""Docstrings that say "from beam import dofns" are not imports."""
import os
import beamer                           # another package that only starts alike
from tags_tf import serving_utils  # a tags_tf module, not the serving package
from serving.export import export_saved_model

import benchmarks.shards_bench as sb


def build():
    from beam.build_shards import run_build_shards  # nested: still an import

    return run_build_shards


class Checker:
    def method(self):
        import tests.conftest

        return importlib.import_module("beam.dofns")
'''


def test_checker_names_the_file_line_and_import_of_every_upward_import():
    found = forbidden_imports(BAD_MODULE, "tags_tf/bad.py", ABOVE_THE_LIBRARY, package="tags_tf")
    assert found == [
        "tags_tf/bad.py:5 imports serving.export",
        "tags_tf/bad.py:7 imports benchmarks.shards_bench",
        "tags_tf/bad.py:11 imports beam.build_shards",
        "tags_tf/bad.py:18 imports tests.conftest",
        "tags_tf/bad.py:20 imports beam.dofns",
    ]
    assert forbidden_imports(BAD_MODULE, "beam/bad.py", ABOVE_THE_APPLICATIONS, package="beam") == [
        "beam/bad.py:7 imports benchmarks.shards_bench",
        "beam/bad.py:18 imports tests.conftest",
    ]
    assert forbidden_imports("import os\nfrom tags_tf import schema\n", "ok.py", ABOVE_THE_LIBRARY) == []


def test_checker_resolves_relative_imports():
    source = "from . import schema\nfrom ..beam import x\nfrom .. import features\n"
    assert imported_modules(source, package="tags_tf.data") == [
        (1, "tags_tf.data"), (2, "tags_tf.beam"), (3, "tags_tf")]

    # Test modules importing test modules, in any folder of tests/ and in any form.
    source = ("import tests.conftest\nfrom tests.conftest import REPO\n"
              "from tests.tags_tf.model.layer_testing import run_layer_test\n"
              "import tests.beam.test_faults_beam\nfrom tests.beam import test_dask_runner\n"
              "from tests.serving.test_export import SERVING_DIR\nfrom .test_model import x\nfrom . import test_losses\n")
    assert imports_of_test_modules(source, "tests/tags_tf/test_y.py", "tests.tags_tf") == [
        "tests/tags_tf/test_y.py:4 imports tests.beam.test_faults_beam",
        "tests/tags_tf/test_y.py:5 imports tests.beam.test_dask_runner",
        "tests/tags_tf/test_y.py:6 imports tests.serving.test_export",
        "tests/tags_tf/test_y.py:7 imports tests.tags_tf.test_model",
        "tests/tags_tf/test_y.py:8 imports tests.tags_tf.test_losses",
    ]


def test_checker_walks_a_package_and_skips_only_the_exempt_clis(tmp_path):
    lib = tmp_path / "tags_tf"
    (lib / "data").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "train.py").write_text("from serving.export import export_saved_model\n")  # a CLI: allowed
    (lib / "data" / "demo.py").write_text("def f():\n    from beam.build_shards import run_build_shards\n")
    found = violations(tmp_path, "tags_tf", ABOVE_THE_LIBRARY, exempt=frozenset({"tags_tf/train.py"}))
    assert found == ["tags_tf/data/demo.py:2 imports beam.build_shards"]
    assert len(violations(tmp_path, "tags_tf", ABOVE_THE_LIBRARY)) == 2  # without the exemption


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """``{module: modules of ours it imports}`` (nested imports included) for every module
    under ``root/package``; ``from a import b`` counts as importing ``a.b`` when that is
    a module, else ``a``."""
    modules = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = ".".join(path.relative_to(root).parent.parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = imported_modules(ast.unparse(node), str(path), package)[0][1]
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def test_no_import_cycle_anywhere():
    graph = import_graph(REPO, ("tags_tf", "beam", "serving"))
    assert len(graph) > 60 and graph["tags_tf.training.trainer"]  # every module, with its edges
    cycles = import_cycles(graph)
    assert not cycles, "modules that import each other (also through others):\n  " + "\n  ".join(map(str, cycles))


def test_the_cycle_finder_finds_a_cycle_through_a_nested_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\n")
    (tmp_path / "pkg" / "d.py").write_text("from pkg.a import x\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.d"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_library_layout_stays_small():
    """Issue 23: no library module over 400 lines, at most 12 modules at tags_tf's top level."""
    long_files = [f"{p.relative_to(REPO)} ({n} lines)" for pkg in ("tags_tf", "beam", "serving")
                  for p in sorted((REPO / pkg).rglob("*.py"))
                  if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert not long_files, "split these by job:\n  " + "\n  ".join(long_files)
    top = sorted(p.name for p in (REPO / "tags_tf").glob("*.py"))
    assert len(top) <= 12, f"tags_tf/ has {len(top)} top-level modules: {top}; group them into a stage package"
