"""Analysis time of each user atom of the test catalogue (sympy derivation, first time in the process).

    python benchmarks/atoms.py

Goals (issue 6): every atom under 0.5 s, the whole catalogue under 10 s. The first line times importing
sympy and the first (warm-up) atom separately, since a `.net` file with atoms pays it once.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))   # the catalogue module imports its conftest


def _catalogue():
    spec = importlib.util.spec_from_file_location("catalogue", ROOT / "tests" / "test_symbolic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    start = time.perf_counter()
    from dcpnet import symbolic
    from dcpnet.graph import load_text

    cat = _catalogue()
    print(f"import dcpnet.symbolic (sympy) and the catalogue: {time.perf_counter() - start:.3f} s")
    rows = []
    for body in cat.CATALOGUE:
        net = load_text(f"input x\natom f(u) = {body}\ny = f(x)\n")
        t0 = time.perf_counter()
        atom = symbolic.user_atom(net, "f")
        rows.append((body, time.perf_counter() - t0, atom))
    for key, expr in cat.SYMPY_CATALOGUE.items():
        t0 = time.perf_counter()
        atom = symbolic.derive(expr, cat.U, "f", key)
        rows.append((key, time.perf_counter() - t0, atom))
    width = max(len(name) for name, _, _ in rows)
    for name, seconds, atom in rows:
        decided = sum(bool(getattr(atom, p)) for p in ("convex_on", "concave_on", "increasing_on", "decreasing_on"))
        flag = "" if seconds < 0.5 else "   <-- over 0.5 s"
        print(f"{name:<{width}}  {seconds * 1000:7.1f} ms  facts in {decided}/4 properties{flag}")
    total = sum(s for _, s, _ in rows)
    slowest = max(rows, key=lambda r: r[1])
    print(f"{len(rows)} atoms: total {total:.2f} s, mean {total / len(rows) * 1000:.0f} ms, "
          f"slowest {slowest[0]!r} {slowest[1] * 1000:.0f} ms (first atom includes sympy's warm-up)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
