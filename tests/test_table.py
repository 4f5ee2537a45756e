"""The default table (no check lines, no --wrt): its layout at any width, what it searches, its one budget,
witnesses shared between cells, and compact witnesses of large networks."""
import io
import pathlib
import re
import time
from fractions import Fraction

import mpmath
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netgen import evaluate
from rich.console import Console

from dcpnet.cli import main
from dcpnet.graph import load, load_text
from dcpnet.lattice import Curvature, Verdict
from dcpnet.refute import _exact_midpoint, _to_mpf, witness_arrays
from dcpnet.report import compress_names, print_results
from dcpnet.verify import Verifier, default_table, run_checks

GOLDEN = pathlib.Path(__file__).parent / "golden"


def test_golden_table_of_a_network_with_many_params(capsys):
    """Regenerate when it should change: dcpnet check tests/golden/icnn_table.net --width 80 >
    tests/golden/icnn_table.txt"""
    assert main(["check", str(GOLDEN / "icnn_table.net"), "--width", "80"]) == 0
    assert capsys.readouterr().out == (GOLDEN / "icnn_table.txt").read_text()


def _many(params: int, outputs: int) -> str:
    lines = ["input x"] + [f"param P{k}" + (" >= 0" if k % 3 == 0 else "") for k in range(params)]
    for j in range(outputs):
        used = [f"P{k}" for k in range(params) if (k + j) % 3 != 1] or ["P0"]
        lines.append(f"out_{j} = relu(x * {used[0]} + {' + '.join(used)})")
    return "\n".join(lines + ["output " + ", ".join(f"out_{j}" for j in range(outputs))]) + "\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 40), st.integers(1, 9), st.integers(40, 160))
def test_the_table_fits_any_width_and_names_every_param_and_output(params, outputs, width):
    net = load_text(_many(params, outputs))
    results = run_checks(Verifier(net, refute=False), None)
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    print_results(console, net, results)
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    for j in range(outputs):
        assert f"out_{j}" in text
    named = set()
    for part in re.findall(r"[A-Za-z_][A-Za-z0-9_…]*", text):
        named.update(_expand(part))
    assert set(net.params) <= named


def _expand(part: str) -> list[str]:
    """The reference reading of `compress_names`: `W1…W9` is W1, W2, ..., W9."""
    m = re.fullmatch(r"(.*?)(\d+)…(.*?)(\d+)", part)
    if not m or m.group(1) != m.group(3):
        return [part]
    return [f"{m.group(1)}{k}" for k in range(int(m.group(2)), int(m.group(4)) + 1)]


names = st.lists(st.builds(lambda stem, k: f"{stem}{k}" if k >= 0 else stem, st.sampled_from(["W", "b", "Wx", "c0d"]),
                           st.integers(-1, 12)), unique=True, max_size=30)


@given(names)
def test_compressed_names_say_exactly_the_names(given_names):
    text = compress_names(given_names)
    expanded = [n for part in text.split(", ") if part for n in _expand(part)]
    assert sorted(expanded) == sorted(given_names)
    assert len(text) <= len(", ".join(given_names))


def _searches(verifier) -> list:
    """Record every witness search of the verifier: (target, wrt, property, deadline, when it began)."""
    refuter = verifier.refuter()
    calls = []
    search = refuter.search

    def recorded(target, wrt, prop, failure=None, deadline=None):
        calls.append((target, tuple(wrt), prop, deadline, time.perf_counter()))
        return search(target, wrt, prop, failure, deadline)

    refuter.search = recorded
    return calls


def test_only_unproved_cells_are_searched_and_only_for_what_they_show():
    net = load(str(GOLDEN / "icnn_table.net"))
    verifier = Verifier(net, seed=0, budget=3.0)
    calls = _searches(verifier)
    results = default_table(verifier, "f")
    searched = {(wrt, prop) for _, wrt, prop, *_ in calls}
    unproved = {tuple(r.wrt) for r in results if r.curvature is Curvature.UNKNOWN}
    assert searched <= {(wrt, p) for wrt in unproved for p in ("convex", "concave")}
    for r in results:
        if r.curvature is not Curvature.UNKNOWN:     # a proved cell shows its class: no search can change it
            assert all(r[p].verdict is not Verdict.REFUTED for p in ("convex", "concave", "affine"))


def test_the_table_shares_one_budget():
    # unproved cells in both outputs: every search of the table ends by the one deadline of its budget (the
    # budget bounds the search, not the rules, so it starts when the first search does)
    net = load_text("param a, b, c\ny = a * b + c ^ 3\nz = a * c\noutput y, z\n")
    verifier = Verifier(net, seed=0, budget=0.6)
    calls = _searches(verifier)
    results = default_table(verifier, "y", "z")          # one table, two outputs: one budget
    assert len(calls) >= 4
    first = min(began for *_, began in calls)
    assert max(deadline for *_, deadline, _ in calls) <= first + 0.6
    for r in results:
        for prop in ("convex", "concave"):
            if r[prop].verdict is Verdict.REFUTED:
                assert _recheck(net, r.expr, prop, r[prop].witness) > 0


def test_a_witness_in_one_param_answers_the_joint_cell_without_a_search():
    net = load_text("input x\nparam a, b\ny = a ^ 3 + b * x\noutput y\n")
    verifier = Verifier(net, seed=0, budget=3.0)
    calls = _searches(verifier)
    results = default_table(verifier, "y")
    joint = next(r for r in results if r.wrt == ["a", "b"])
    alone = next(r for r in results if r.wrt == ["a"])
    for prop in ("convex", "concave"):
        assert alone[prop].verdict is Verdict.REFUTED and joint[prop].verdict is Verdict.REFUTED
        assert joint[prop].witness is alone[prop].witness
        assert ("y", ("a", "b"), prop) not in {c[:3] for c in calls}
        assert _recheck(net, "y", prop, joint[prop].witness) > 0
    assert joint.affine.verdict is Verdict.REFUTED


def _recheck(net, target: str, prop: str, w: dict) -> float:
    """The Jensen gap of a witness by the tests' own evaluator, at the worst entry the witness names."""
    fixed = {k: v[None] for k, v in witness_arrays(net, w, "fixed").items()}
    a, b = witness_arrays(net, w, "a"), witness_arrays(net, w, "b")
    mid = {k: (a[k] + b[k]) / 2 for k in a}
    node = net.names[target]
    flat = int(np.ravel_multi_index(w["index"], net.nodes[node].shape)) if w["index"] else 0
    values = [float(np.ravel(evaluate(net, node, {**fixed, **{k: v[None] for k, v in p.items()}}))[flat])
              for p in (a, b, mid)]
    gap = values[2] - (values[0] + values[1]) / 2
    return gap if prop == "convex" else -gap


def _wide_icnn(width: int) -> str:
    return (f"input x[3]\nparam W0[{width}, 3], b0[{width}]\nz0 = relu(W0 @ x + b0)\n"
            f"param Wz[{width}, {width}] >= 0, Wx[{width}, 3], b1[{width}]\nz1 = relu(Wz @ z0 + Wx @ x + b1)\n"
            f"param w[{width}] >= 0\nf = w @ z1\n")


def test_witnesses_of_a_wide_network_are_simplified_and_still_recheck():
    net = load_text(_wide_icnn(24))
    r = Verifier(net, seed=0, budget=3.0).verify("f", ["params"])
    w = r.convex.witness
    assert r.convex.verdict is Verdict.REFUTED and _recheck(net, "f", "convex", w) > 0
    assert set(w["a"]) == set(w["b"]) and set(w["a"]) | set(w["fixed"]) == {"x", *net.params}
    assert len(w["a"]) < len(net.params)          # only the variables that must move for the gap to show
    for group in ("a", "b", "fixed"):
        for k, v in witness_arrays(net, w, group).items():
            assert v.shape == net.variables[k].shape
            bounds = net.variables[k].bounds
            assert np.all(v >= bounds.lo) and np.all(v <= bounds.hi)
    compact = [k for k, v in w["fixed"].items() if isinstance(v, float) and net.variables[k].shape]
    assert compact, "a large fixed array of one repeated value is written as the one number"


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
grid = st.integers(-2 ** 40, 2 ** 40).map(lambda k: k * 2.0 ** -30)


@given(st.lists(st.tuples(st.one_of(grid, finite, st.just(float("nan"))), st.one_of(grid, finite)), min_size=1,
                max_size=6))
def test_the_midpoint_check_agrees_with_fractions(pairs):
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    with np.errstate(all="ignore"):
        m = (a + b) / 2
    try:
        expected = all(Fraction(x) + Fraction(y) == 2 * Fraction(z) for x, y, z in zip(a, b, m))
    except (ValueError, OverflowError):
        expected = False
    assert _exact_midpoint(a, b) is expected


@given(st.lists(finite, min_size=0, max_size=8), st.booleans())
def test_floats_become_the_same_mpf(values, repeat):
    arr = np.array(values[:1] * 20 if repeat and values else values, dtype=float)
    out = _to_mpf(arr)
    assert [x._mpf_ for x in out] == [mpmath.mpf(float(v))._mpf_ for v in arr]
