"""One direction of imports: ops -> models -> {data, losses, metrics} -> experiments (library) -> entry points.

Every module's imports, at the top and inside functions, are read with ``ast``: a module may import its
own package (its own floor of experiments/) and any floor below, nothing beside or above it. The three
packages of the middle floor do not import each other, no entry point imports another (what two share is
library), and no module imports itself through others. A new script under experiments/ (one with a
``__main__`` block) must be named in ``ENTRY_POINTS``, so the split stays written down here.

The scripts import the installed package: nothing in the tree changes ``sys.path`` (but for
``ALLOWED_SYS_PATH``), and every console script of pyproject.toml names a ``main`` that exists.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

REPO = Path(__file__).resolve().parent.parent
FLOORS = {"ops": 0, "models": 1, "data": 2, "losses": 2, "metrics": 2, "experiments": 3}
# experiments/ modules that are run directly; the rest of experiments/ is the library they build on
ENTRY_POINTS = frozenset(
    {
        "benchmark",
        "convert",
        "demo",
        "evaluate",
        "figure",
        "generate",
        "gpu_check",
        "prepare",
        "pretrain_toy",
        "report",
        "reproduce",
        "run",
        "weights",
    }
)
ENTRY_FLOOR = 4


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _group(module: str) -> tuple[str, int] | None:
    """(group, floor) of a dotted module name of this tree; None for anything else (torch, stdlib)."""
    parts = module.split(".")
    if parts[0] not in FLOORS:
        return None
    if parts[0] == "experiments" and len(parts) > 1 and parts[1] in ENTRY_POINTS:
        return f"experiments.{parts[1]}", ENTRY_FLOOR  # each entry point a group of its own
    return parts[0], FLOORS[parts[0]]


def imported_modules(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in the file, wherever it sits (module, function, class)."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *filter(None, [base])])
            # ``from pkg import mod`` imports the module pkg.mod when it exists
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (root / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    root / Path(*sub.split(".")) / "__init__.py"
                ).is_file()
                found.append((node.lineno, sub if is_module else base))
    return sorted(set(found))


def violations(root: Path) -> list[str]:
    """One line per import against the direction, ``file:line: group -> module (why)``."""
    out = []
    for package in FLOORS:
        for path in sorted((root / package).rglob("*.py")):
            source = _group(_module_name(root, path))
            for line, target in imported_modules(root, path):
                dest = _group(target)
                if dest is None or dest[0] == source[0] or dest[1] < source[1]:
                    continue
                why = "same floor" if dest[1] == source[1] else "upward"
                out.append(f"{path.relative_to(root)}:{line}: {source[0]} -> {target} ({why})")
    return out


def import_cycles(root: Path) -> list[list[str]]:
    """Modules of the tree that import each other round a circle (strongly connected sets of two or more)."""
    graph = {}
    for package in FLOORS:
        for path in (root / package).rglob("*.py"):
            name = _module_name(root, path)
            graph[name] = {target for _, target in imported_modules(root, path) if target != name}
    order, low, stack, cycles = {}, {}, [], []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in graph[node] & graph.keys():
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return cycles


def test_no_import_against_the_direction():
    found = violations(REPO)
    assert not found, (
        "imports against ops -> models -> {data, losses, metrics} -> experiments -> entry points:\n" + "\n".join(found)
    )


def test_no_import_cycles():
    assert import_cycles(REPO) == []


def test_entry_points_are_the_scripts_of_experiments():
    scripts = {p.stem for p in (REPO / "experiments").glob("*.py") if '__name__ == "__main__"' in p.read_text()}
    assert scripts == ENTRY_POINTS, (
        f"run directly but not listed: {sorted(scripts - ENTRY_POINTS)}; listed "
        f"but not scripts: {sorted(ENTRY_POINTS - scripts)}"
    )


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name in FLOORS:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
    for rel, text in files.items():
        (root / rel).write_text(text)
    return root


CLEAN = {
    "ops/resize.py": "import torch\n",
    "models/net.py": "from ops.resize import x\nfrom . import other\n",
    "models/other.py": "",
    "losses/loss.py": "from models.net import Net\nimport ops.resize\n",
    "experiments/world.py": "from data import x\nfrom losses.loss import L\n",
    "experiments/run.py": "from experiments.world import World\nfrom experiments import evaluation\n",
    "experiments/evaluate.py": "from experiments.evaluation import evaluate\n",
    "experiments/evaluation.py": "from experiments.world import World\n",
}


def test_a_clean_tree_passes(tmp_path):
    assert violations(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize(
    "planted, statement, expected",
    [
        # upward, hidden inside a function
        ("models/net.py", "from experiments.world import World", "models -> experiments.world (upward)"),
        # beside: losses and metrics are one floor
        ("losses/loss.py", "from metrics import suite", "losses -> metrics.suite (same floor)"),
        # the library may not import an entry point, even relatively
        ("experiments/world.py", "from . import run", "experiments -> experiments.run (upward)"),
        # an entry point may not import another: what they share belongs in the library
        (
            "experiments/run.py",
            "from experiments.evaluate import main",
            "experiments.run -> experiments.evaluate (same floor)",
        ),
    ],
)
def test_a_planted_import_is_caught(tmp_path, planted, statement, expected):
    files = {**CLEAN, "metrics/suite.py": "", planted: f"{CLEAN[planted]}\n\ndef later():\n    {statement}\n"}
    found = violations(_tree(tmp_path, files))
    assert len(found) == 1 and found[0].startswith(planted) and found[0].endswith(expected), found


def test_a_planted_cycle_is_caught(tmp_path):
    files = {**CLEAN, "models/other.py": "def later():\n    import models.net\n"}
    assert import_cycles(_tree(tmp_path, files)) == [["models.net", "models.other"]]
    assert import_cycles(_tree(tmp_path / "clean", CLEAN)) == []


# ---- sys.path and console scripts ----------------------------------------------------------------------

# (file, function) that may change sys.path: convert's opt-in --nvlabs-repo puts the user's NVlabs checkout
# there to unpickle their network (the pickle names its modules)
ALLOWED_SYS_PATH = frozenset({("experiments/convert.py", "load_source")})


def sys_path_changes(root: Path) -> list[str]:
    """``file:line (function)`` of every statement of the tree's .py files that changes ``sys.path``: a call
    of a method on it (insert, append, extend, remove, ...), an assignment to it or to an item of it, or
    ``from sys import path``; those in ALLOWED_SYS_PATH are left out."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".", "build/")) or "/." in rel:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        scopes = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    scopes.setdefault(id(inner), node.name)  # the outermost function holding it

        def is_sys_path(node) -> bool:
            while isinstance(node, ast.Subscript):
                node = node.value
            return (
                isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            )

        for node in ast.walk(tree):
            hit = (
                (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and is_sys_path(node.func.value))
                or (
                    isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                    and any(is_sys_path(t) for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
                )
                or (
                    isinstance(node, ast.ImportFrom)
                    and node.module == "sys"
                    and any(a.name == "path" for a in node.names)
                )
            )
            if hit and (rel, scopes.get(id(node))) not in ALLOWED_SYS_PATH:
                found.append(f"{rel}:{node.lineno} ({scopes.get(id(node), 'module level')})")
    return found


def test_nothing_changes_sys_path():
    assert sys_path_changes(REPO) == [], "scripts import the installed package (pip install -e .); no sys.path patches"


@pytest.mark.parametrize(
    "statement",
    [
        "sys.path.insert(0, str(ROOT))",
        "sys.path.append('x')",
        "sys.path[:0] = ['x']",
        "sys.path = ['x'] + sys.path",
        "sys.path += ['x']",
    ],
)
def test_a_planted_sys_path_change_is_caught(tmp_path, statement):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "run.py").write_text(f"import sys\n\nif True:\n    {statement}\n")
    (tmp_path / "experiments" / "convert.py").write_text(
        "import sys\n\ndef load_source():\n    sys.path.insert(0, 'x')\n"
    )
    assert sys_path_changes(tmp_path) == ["experiments/run.py:4 (module level)"]


def console_scripts() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's tomllib reads pyproject.toml")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_console_script_names_a_callable_of_an_entry_point():
    scripts = console_scripts()
    assert scripts, "pyproject.toml has no [project.scripts]"
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert name.startswith("ideface-") and module.startswith("experiments."), (name, target)
        assert module.removeprefix("experiments.") in ENTRY_POINTS, f"{name}: {module} is not an entry point"
        assert callable(getattr(import_module(module), attr)), (name, target)


def test_a_console_script_target_runs_in_a_fresh_interpreter():
    """``ideface-report --help`` as pip's wrapper runs it (import the module, call main, exit with its code)."""
    module, _, attr = console_scripts()["ideface-report"].partition(":")
    code = f"import sys\nfrom {module} import {attr}\nsys.exit({attr}(['--help']))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: ideface-report" in proc.stdout and "--online" in proc.stdout
