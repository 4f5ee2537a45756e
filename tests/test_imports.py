"""The import rules of the layout: each outside library enters through one door, the optional ones only
inside functions, no circle among dcpnet's modules, nothing imports the CLI, and `dcpnet check` on a file
without atoms loads neither sympy nor the training package."""
from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest
from conftest import CASES, ROOT

PACKAGE = ROOT / "dcpnet"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
# library -> the modules (paths inside dcpnet/) that may import it; a folder name covers its whole package
DOORS = {"lark": {"syntax.py"}, "sympy": {"symbolic"}, "rich": {"report.py", "cli.py"}}
LAZY = {"matplotlib", "torch", "cvxpy", "onnx", "onnxruntime", "numba", "sklearn", "scipy"}


def rel(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def module_name(path: pathlib.Path) -> str:
    parts = ["dcpnet", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path, top_level_only: bool = False, tree: ast.Module | None = None) -> list[tuple[str, ast.AST]]:
    """(absolute module name, node) of every import in the file; relative ones resolved against it."""
    tree = tree or ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out += [(f"{mod}.{a.name}" if not node.module else mod, node) for a in node.names]
            else:
                out.append((node.module, node))
    return out


def allowed(lib: str, path: pathlib.Path) -> bool:
    where = rel(path)
    return any(where in (door, door + ".py") or where.startswith(door + "/") for door in DOORS[lib])


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_libraries_enter_through_their_door(path):
    for name, _ in imports(path):
        lib = name.split(".")[0]
        if lib in DOORS:
            assert allowed(lib, path), f"{rel(path)} imports {lib}"


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_optional_libraries_are_imported_lazily(path):
    for name, _ in imports(path, top_level_only=True):
        assert name.split(".")[0] not in LAZY, f"{rel(path)} imports {name} at module level"


DISPLAY_HOOKS = {"explain", "__rich__", "_repr_html_"}   # a Result shows itself in a notebook through report


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_nothing_imports_the_cli_and_only_the_cli_imports_report(path):
    for name, _ in imports(path):
        assert name != "dcpnet.cli" or rel(path) == "__main__.py", f"{rel(path)} imports the CLI"
    if rel(path) == "cli.py":
        return
    tree = ast.parse(path.read_text())
    hooks = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in DISPLAY_HOOKS]
    allowed_nodes = {id(n) for f in hooks for n in ast.walk(f)}
    for name, node in imports(path, tree=tree):
        if name.startswith("dcpnet.report"):
            assert id(node) in allowed_nodes, f"{rel(path)} imports report outside a display hook"


def test_no_import_circle_among_the_modules():
    known = {module_name(p): p for p in MODULES}

    def target(name: str) -> str | None:       # `from .train import optim` names a module or a package
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {t for n, _ in imports(p, top_level_only=True) if (t := target(n)) and t != m}
             for m, p in known.items()}
    # a package's __init__ importing its own submodules is no circle; drop edges from a module to its parents
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in edges.items()}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for t in edges[m]:
            assert state.get(t) != 1, "import circle: " + " -> ".join(trail + [m, t])
            if t not in state:
                visit(t, trail + [m])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [])


def test_check_without_atoms_into_a_pipe_loads_neither_sympy_nor_rich_nor_training(tmp_path):
    net = tmp_path / "plain.net"
    net.write_text((CASES / "icnn.net").read_text())
    probe = ("import sys, json; from dcpnet.cli import main; code = main(['check', sys.argv[1]]); "
             "print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in "
             "('sympy', 'rich', 'torch', 'cvxpy', 'matplotlib', 'onnx', 'numba') or m.startswith('dcpnet.train') "
             "or m.startswith('dcpnet.interop'))]))")
    out = subprocess.run([sys.executable, "-c", probe, str(net)], check=False, capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    code, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 0 and loaded == [], loaded
