"""Monotonicity claims: `check increasing(f) in x` and `check decreasing(f) in x` (issue 17).

"Increasing in x" means nondecreasing in every entry of every listed variable, for every admissible value of
everything else, where f is defined. A proof reads the monotonicity the prover's one pass computed for each
node (`Step.mono`); a refutation is a witness pair a ≤ b differing in one coordinate with f(a) > f(b)
(f(a) < f(b) for decreasing), found in floats and re-checked at 50 digits with `precise.py` at points where
f, read exactly as written, is defined.
"""
from __future__ import annotations

import time

import numpy as np

from .lattice import Monotonicity

M = Monotonicity
PROPS = ("increasing", "decreasing")
DIGITS = 50
NOISE = 1e-10
SCALES = (1.0, 0.1, 10.0, 3.0, 0.01, 100.0)


def proves(mono: Monotonicity, prop: str) -> bool:
    """Does the computed monotonicity establish the claim? (A constant is both.)"""
    return mono is M.CONSTANT or mono is (M.INCREASING if prop == "increasing" else M.DECREASING)


def lowest_loss(analyzer, root: int, wrt) -> int:
    """The lowest node on a path from `root` whose monotonicity is lost while its arguments' is known."""
    steps = analyzer.steps(wrt)
    node = root
    while True:
        lost = [a for a in analyzer.net.nodes[node].args if steps[a].mono is M.NONE]
        if not lost:
            return node
        node = lost[0]


def search(refuter, target: int, wrt: list[str], prop: str, deadline: float, seed: int = 0) -> dict | None:
    """A verified pair a ≤ b (one coordinate apart) breaking the claim, or None by the deadline."""
    leaves = refuter._leaves(target)
    wrt = [v for v in wrt if v in leaves]
    if not wrt:
        return None
    fixed = [v for v in leaves if v not in wrt]
    rng = np.random.default_rng([seed, target, len(wrt), 2 if prop == "increasing" else 3])
    sign = 1.0 if prop == "increasing" else -1.0
    n = 128
    rounds = 0
    while time.perf_counter() < deadline:
        scale = SCALES[rounds % len(SCALES)]
        rounds += 1
        cand = refuter._sample(wrt, fixed, rng, scale, n)
        a = cand["a"]
        b = {v: x.copy() for v, x in a.items()}
        which = rng.integers(0, len(wrt), size=n)
        steps = scale * 10.0 ** rng.uniform(-2, 0.5, size=n)
        for k in range(n):
            v = wrt[which[k]]
            flat = b[v][k].reshape(-1)
            j = rng.integers(0, flat.size)
            flat[j] = flat[j] + steps[k]
            b[v][k] = flat.reshape(b[v][k].shape)
        b = {v: refuter._snap(v, x) for v, x in b.items()}
        gaps = _gaps(refuter, target, cand["fixed"], a, b, sign)
        if gaps is None:
            continue
        rel, entries = gaps
        for i in np.argsort(-rel)[:3]:
            if not rel[i] > NOISE:
                break
            found = _verify(refuter, target, cand["fixed"], a, b, int(i), int(entries[i]), wrt, sign)
            if found is not None:
                return found
    return None


def _gaps(refuter, node: int, fixed: dict, a: dict, b: dict, sign: float):
    n = len(next(iter(a.values())))
    env = {v: np.concatenate([x, x]) for v, x in fixed.items()}
    for v, x in a.items():
        env[v] = np.concatenate([x, b[v]])
    try:
        with np.errstate(all="ignore"):
            out = refuter._plan(node).forward(env, batched=set(env))
    except (FloatingPointError, ValueError, ZeroDivisionError, OverflowError):
        return None
    net = refuter.net
    y = out[node] if node in out else out[net.nodes[node].label]
    y = np.asarray(y, dtype=float).reshape(2 * n, -1)
    fa, fb = y[:n], y[n:]
    with np.errstate(all="ignore"):
        rel = sign * (fa - fb) / (np.abs(fa) + np.abs(fb) + 1e-300)
    rel = np.where(np.isfinite(fa) & np.isfinite(fb) & np.isfinite(rel), rel, -np.inf)
    return rel.max(axis=1), rel.argmax(axis=1)


def _verify(refuter, node: int, fixed: dict, a: dict, b: dict, i: int, entry: int, wrt, sign: float) -> dict | None:
    import mpmath

    from .precise import OutsideDomain, evaluate_precise, to_mp

    net = refuter.net
    pa = {v: a[v][i] for v in wrt}
    pb = {v: b[v][i] for v in wrt}
    moved = [(v, j) for v in wrt for j, (x, y) in enumerate(zip(np.ravel(pa[v]), np.ravel(pb[v]))) if x != y]
    if len(moved) != 1 or not all(np.all(pa[v] <= pb[v]) for v in wrt):
        return None   # after snapping, not one coordinate apart with a ≤ b
    point_fixed = {v: fixed[v][i] for v in fixed}
    values = []
    try:
        with mpmath.workdps(DIGITS):
            fixed_mp = {v: to_mp(x, net.variables[v].shape) for v, x in point_fixed.items()}
        for at in (pa, pb):
            out = evaluate_precise(net, [node], {**fixed_mp, **at}, dps=DIGITS)
            values.append(np.asarray(out[node], dtype=object).reshape(-1)[entry])
    except (OutsideDomain, ZeroDivisionError, ValueError, OverflowError):
        return None
    with mpmath.workdps(DIGITS):
        fa, fb = values
        gap = sign * (fa - fb)
        if not gap > (abs(fa) + abs(fb) + 1) * mpmath.mpf(10) ** (-(DIGITS - 15)):
            return None
    shape = net.nodes[node].shape
    v, j = moved[0]
    var_shape = net.variables[v].shape
    return {"a": _lists(pa), "b": _lists(pb), "fixed": _lists(point_fixed),
            "index": [int(k) for k in np.unravel_index(entry, shape)] if shape else [],
            "moved": {"name": v, "index": [int(k) for k in np.unravel_index(j, var_shape)] if var_shape else []},
            "f_a": float(fa), "f_b": float(fb), "gap": float(gap), "digits": DIGITS}


def _lists(values: dict) -> dict:
    return {k: np.asarray(x, dtype=float).tolist() for k, x in values.items()}
