"""Each outside library enters through one door: lark in syntax, sympy in symbolic, rich in report and cli."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dcpnet"
ALLOWED = {"lark": {"syntax.py"}, "sympy": {"symbolic.py"}, "rich": {"report.py", "cli.py"},
           "matplotlib": {"train.py", "refute.py"}, "cvxpy": set(), "torch": set()}


def imported_roots(path: pathlib.Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_libraries_are_imported_only_where_allowed(path):
    for lib in imported_roots(path) & set(ALLOWED):
        assert path.name in ALLOWED[lib], f"{path.name} imports {lib}"
