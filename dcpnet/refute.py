"""The search for witnesses: points a, b (and fixed values) whose midpoint breaks Jensen's inequality.

Candidates are sampled in batches within the declared constraints at several scales and improved by a
simple evolutionary ascent on the relative gap. Every candidate snaps to a grid on which (a + b) / 2 is
exact in binary floating point, and is re-evaluated with mpmath at `DIGITS` significant digits before it
is reported; one whose gap does not survive is discarded, never reported. Deterministic for a seed.
"""
from __future__ import annotations

import functools
import math
import time
from fractions import Fraction

import numpy as np

DIGITS = 50
SCALES = (1.0, 0.3, 3.0, 10.0, 0.05, 30.0)
BATCH = 256                # candidates per round, fewer when one candidate holds many numbers
ENTRIES_PER_ROUND = 2 ** 18
NOISE = 1e-10              # relative Jensen gaps below this are float rounding, not curvature
GRID = 2.0 ** -30          # a, b on this grid with |v| < 2^20: a + b and its half are exact floats
SIMPLIFY_ABOVE = 256       # candidates holding more numbers are simplified before they are checked
FILL_ABOVE = 16            # a fixed array of more equal entries is reported as the one number


class Refuter:
    """Looks for Jensen violations of one network's nodes; compiled evaluators are cached per target."""

    def __init__(self, net, analyzer, seed: int = 0):
        self.net = net
        self.analyzer = analyzer
        self.seed = seed
        self._plans: dict[int, object] = {}
        self.batch = BATCH

    # -- public --------------------------------------------------------------------------------------
    def search(self, target, wrt: list[str], prop: str, failure=None, deadline: float | None = None) -> dict | None:
        """A verified witness that `target` is not `prop` ("convex" or "concave") in `wrt`, or None."""
        node = self.net.names[target] if isinstance(target, str) else target
        free = [v for v in self._leaves(node)]
        wrt = [v for v in wrt if v in free]
        if not wrt:
            return None  # constant in the variables: affine, nothing to refute
        fixed = [v for v in free if v not in wrt]
        entries = sum(self.net.nodes[self.net.variables[v].node].size for v in fixed + wrt + wrt)
        self.batch = int(min(BATCH, max(8, ENTRIES_PER_ROUND // max(entries, 1))))
        rng = np.random.default_rng([self.seed, node, len(wrt), 0 if prop == "convex" else 1])
        deadline = deadline if deadline is not None else time.perf_counter() + 3.0
        sign = 1.0 if prop == "convex" else -1.0
        best = None
        rounds = 0
        scalar = self.net.nodes[node].shape == ()
        opposed = self._factor_groups(failure, wrt)
        wrong_way = self._wrong_way(failure)
        while time.perf_counter() < deadline:
            # unit scale first, then scales drawn independently of the strategy cycle below
            scale = SCALES[0] if rounds == 0 else SCALES[rng.integers(len(SCALES))]
            if opposed and rounds % 8 == 4:
                cand = self._opposed(opposed, wrt, fixed, rng, scale)
            elif wrong_way and rounds % 8 == 4:
                cand = self._where_wrong_way(wrong_way, wrt, fixed, rng, scale)
            elif best is None or rounds % 4 == 0:
                cand = self._sample(wrt, fixed, rng, scale, self.batch)
            elif rounds % 4 == 1:
                cand = self._mutate(best, wrt, fixed, rng, scale)
            elif rounds % 4 == 2:
                cand = self._line_probe(best, wrt, fixed, rng, scale)
            else:
                cand = self._ascend(node, best, wrt, fixed, sign, scale) if scalar else \
                    self._mutate(best, wrt, fixed, rng, scale)
            rounds += 1
            gaps, _ = self._gaps(node, cand, wrt, fixed, sign)
            if gaps is None:
                continue
            order = np.argsort(-gaps)
            for k, i in enumerate(order[:4]):
                # a relative gap within float noise is not worth a 50-digit evaluation (which costs far more,
                # and on a deep network nearly always fails); past the deadline only the round's best
                # candidate is still checked: it was found in time
                if not gaps[i] > NOISE or (k > 0 and time.perf_counter() > deadline):
                    break
                witness = self._confirm(node, _point(cand, int(i)), sign, float(gaps[i]))
                if witness is not None:
                    return witness
            best = self._keep_best(best, cand, gaps, order)
        return None

    def explain(self, target, wrt, prop: str, failure, witness: dict) -> str:
        where = ""
        if failure is not None:
            node = self.net.nodes[failure.node]
            where = f"; the rules stopped at `{node.label}` (line {node.line}): {failure.reason}"
        entry = f" (entry {witness['index']})" if witness["index"] else ""
        chord = (witness["f_a"] + witness["f_b"]) / 2
        rel = "above" if prop == "convex" else "below"
        return (f"not {prop}: at the midpoint of a and b, {target}{entry} = {witness['f_mid']:.6g} lies {rel} the "
                f"chord value {chord:.6g} by {witness['gap']:.3g}{where}")

    # -- sampling --------------------------------------------------------------------------------------
    def _leaves(self, node: int) -> list[str]:
        nodes = self.net.nodes
        return [nodes[i].attrs[0] for i in self.net.ancestors(node) if nodes[i].op == "var"]

    def _draw(self, name: str, rng, scale: float, n: int) -> np.ndarray:
        var = self.net.variables[name]
        lo, hi = var.bounds.lo, var.bounds.hi
        shape = (n, *var.shape)
        if math.isfinite(lo) and math.isfinite(hi):
            span = hi - lo
            values = lo + span * rng.random(shape)
            edge = rng.random(shape) < 0.1
            values = np.where(edge, np.where(rng.random(shape) < 0.5, lo, hi), values)
        elif math.isfinite(lo):
            values = lo + scale * rng.exponential(size=shape)
            values = np.where(rng.random(shape) < 0.1, lo, values)
        elif math.isfinite(hi):
            values = hi - scale * rng.exponential(size=shape)
            values = np.where(rng.random(shape) < 0.1, hi, values)
        else:
            values = scale * rng.standard_normal(shape)
        return self._snap(name, values)

    def _snap(self, name: str, values: np.ndarray) -> np.ndarray:
        if name in self.net.fixed:   # fixed to known values (check --params): exactly those, never others
            return np.broadcast_to(self.net.fixed[name], values.shape).copy()
        var = self.net.variables[name]
        snapped = np.round(np.clip(values, -2.0 ** 19, 2.0 ** 19) / GRID) * GRID
        return np.clip(snapped, var.bounds.lo, var.bounds.hi)

    def _sample(self, wrt, fixed, rng, scale, n) -> dict:
        if rng.random() < 0.3 and any(self.net.variables[v].kind == "param" for v in fixed + wrt) and scale != 1:
            return self._sample_trained_like(wrt, fixed, rng, scale, n)
        cand = {"fixed": {v: self._draw(v, rng, scale, n) for v in fixed},
                "a": {v: self._draw(v, rng, scale, n) for v in wrt},
                "b": {v: self._draw(v, rng, scale, n) for v in wrt}}
        return self._shorten_half(cand, wrt, rng, scale, n)

    def _sample_trained_like(self, wrt, fixed, rng, scale, n) -> dict:
        """Params drawn as training would start them (fan-in scaled, sign-constrained; see init_params),
        plus noise: in a deep network, weights of a fixed scale blow the signal up or let it die, and then
        no kink is ever crossed; at these scales the activations stay of order one."""
        from .train.params import init_params

        draws = [init_params(self.net, rng) for _ in range(min(n, 16))]   # a few networks, many noisy copies
        which = rng.integers(0, len(draws), size=n)

        def value(v: str) -> np.ndarray:
            if self.net.variables[v].kind != "param":   # inputs, and constants (init_params has none)
                return self._draw(v, rng, scale, n)
            base = np.stack([draws[k][v] for k in which])
            return self._snap(v, base + 0.3 * scale * rng.standard_normal(base.shape))

        cand = {"fixed": {v: value(v) for v in fixed}, "a": {v: value(v) for v in wrt}}
        cand["b"] = {v: value(v) for v in wrt}
        return self._shorten_half(cand, wrt, rng, scale, n)

    def _shorten_half(self, cand: dict, wrt, rng, scale, n) -> dict:
        # half of the pairs are short segments around a point: local curvature shows at small distance
        step = rng.random() * scale
        for v in wrt:
            near = self._snap(v, cand["a"][v] + step * rng.standard_normal(cand["a"][v].shape))
            half = np.arange(n) % 2 == 1
            cand["b"][v][half] = near[half]
        return cand

    def _factor_groups(self, failure, wrt) -> tuple[list[str], list[str]] | None:
        """For a product of two varying factors (the rule that failed), the variables of each factor."""
        if failure is None or failure.rule != "product rule":
            return None
        left, right = (set(self._leaves(a)) & set(wrt) for a in self.net.nodes[failure.node].args)
        return (sorted(left - right), sorted(right - left)) if left - right and right - left else None

    def _opposed(self, groups, wrt, fixed, rng, scale) -> dict:
        """Bilinear failures: move the two factors' variables in opposite directions, (+d, -d), through a
        random point, so the product's cross term bends the segment (u·v along (1, -1) is concave)."""
        base = self._sample(wrt, fixed, rng, scale, self.batch)
        left, right = groups
        out: dict = {"fixed": base["fixed"], "a": {}, "b": {}}
        flip = rng.choice([1.0, -1.0], size=self.batch)      # which factor grows, per candidate
        for v in wrt:
            centre = base["a"][v]
            sign = 1.0 if v in left else -1.0 if v in right else 0.0
            per_row = (sign * flip).reshape((self.batch,) + (1,) * (centre.ndim - 1))
            d = per_row * scale * np.abs(rng.standard_normal(centre.shape))   # every entry the same way
            out["a"][v] = self._snap(v, centre + d)
            out["b"][v] = self._snap(v, centre - d)
        return out

    def _wrong_way(self, failure) -> tuple[int, tuple] | None:
        """For an outer function that is not monotone the needed way on its argument's range: the argument
        node and the pieces where the outer function does go the needed way (the seed's (x^2 - 1)^2)."""
        if failure is None or failure.rule != "monotonicity of the outer function":
            return None
        node = self.net.nodes[failure.node]
        if node.op != "scalar":
            return None
        f = self.analyzer.atom(node)
        return node.args[0], f.increasing_on if failure.need == "nondecreasing" else f.decreasing_on

    def _where_wrong_way(self, wrong_way, wrt, fixed, rng, scale) -> dict:
        """Segments centred where the argument lies outside the pieces on which the outer function is
        monotone the needed way: there f' has the wrong sign, and short segments show the bend."""
        arg, good = wrong_way
        pool = self._sample(wrt, fixed, rng, scale, self.batch)
        env = {**pool["fixed"], **pool["a"]}
        try:
            with np.errstate(all="ignore"):
                values = self._plan(arg).forward(env, batched=set(env))[arg]
        except (FloatingPointError, ValueError, ZeroDivisionError, OverflowError):
            return pool
        values = np.asarray(values, dtype=float).reshape(self.batch, -1)
        inside = np.zeros(values.shape, dtype=bool)
        for piece in good:
            inside |= (values >= piece.lo) & (values <= piece.hi)
        wrong = np.isfinite(values) & ~inside
        rows = np.flatnonzero(wrong.any(axis=1))
        if rows.size == 0:
            return pool
        pick = rows[rng.integers(0, rows.size, size=self.batch)]
        steps = scale * 10.0 ** rng.uniform(-2, 0, size=self.batch)
        out: dict = {"fixed": {v: pool["fixed"][v][pick] for v in fixed}, "a": {}, "b": {}}
        for v in wrt:
            centre = pool["a"][v][pick]
            shift = rng.standard_normal(centre.shape) * steps.reshape((-1,) + (1,) * (centre.ndim - 1))
            out["a"][v] = self._snap(v, centre - shift)
            out["b"][v] = self._snap(v, centre + shift)
        return out

    def _mutate(self, best: dict, wrt, fixed, rng, scale) -> dict:
        n = self.batch
        pick = rng.integers(0, len(next(iter(best["a"].values()))), size=n)
        out: dict = {"fixed": {}, "a": {}, "b": {}}
        for group, names in (("fixed", fixed), ("a", wrt), ("b", wrt)):
            for v in names:
                base = best[group][v][pick]
                noise = scale * 0.1 * rng.standard_normal(base.shape) * (rng.random(base.shape) < 0.3)
                out[group][v] = self._snap(v, base + noise)
        return out

    def _line_probe(self, best: dict, wrt, fixed, rng, scale) -> dict:
        """Second differences along random lines through good midpoints, at step sizes over four decades:
        where f curves the wrong way along some direction, a short symmetric pair shows it."""
        pick = rng.integers(0, len(best["gap"]), size=self.batch)
        steps = scale * 10.0 ** rng.uniform(-3, 1, size=self.batch)
        out: dict = {"fixed": {v: best["fixed"][v][pick] for v in fixed}, "a": {}, "b": {}}
        for v in wrt:
            centre = (best["a"][v][pick] + best["b"][v][pick]) / 2
            direction = rng.standard_normal(centre.shape)
            shift = direction * steps.reshape((-1,) + (1,) * (centre.ndim - 1))
            out["a"][v] = self._snap(v, centre - shift)
            out["b"][v] = self._snap(v, centre + shift)
        return out

    def _ascend(self, node: int, best: dict, wrt, fixed, sign: float, scale: float) -> dict:
        """One normalised gradient step on the Jensen gap of each kept candidate (scalar outputs):
        d gap / d a = (f'(m) - f'(a)) / 2, likewise for b; the fixed values move along f'(m) - mean f'."""
        n = len(best["gap"])
        env = {v: np.concatenate([x, x, x]) for v, x in best["fixed"].items()}
        for v in wrt:
            a, b = best["a"][v], best["b"][v]
            env[v] = np.concatenate([a, b, (a + b) / 2])
        try:
            with np.errstate(all="ignore"):   # candidates with infinite values only skew the unused mean
                _, grads = self._plan(node).backward(env, batched=set(env), loss=node, per_example=True)
        except (FloatingPointError, ValueError, ZeroDivisionError, OverflowError):
            return best
        out: dict = {"fixed": {}, "a": {}, "b": {}}
        for group, names in (("a", wrt), ("b", wrt), ("fixed", fixed)):
            for v in names:
                g = grads[v]
                ga, gb, gm = g[:n], g[n:2 * n], g[2 * n:]
                with np.errstate(all="ignore"):  # candidates outside a domain have NaN gradients: they stay put
                    step = {"a": (gm - ga) / 2, "b": (gm - gb) / 2, "fixed": gm - (ga + gb) / 2}[group] * sign
                    norm = np.sqrt((step.reshape(n, -1) ** 2).sum(axis=1)).reshape((-1,) + (1,) * (step.ndim - 1))
                    move = np.nan_to_num(step / (norm + 1e-300)) * 0.1 * scale
                out[group][v] = self._snap(v, best[group][v] + move)
        return out

    def _keep_best(self, best, cand, gaps, order) -> dict:
        top = order[:16]
        pool = {g: {v: x[top] for v, x in cand[g].items()} for g in cand}
        pool["gap"] = gaps[top]
        if best is None:
            return pool
        merged = {g: {v: np.concatenate([best[g][v], pool[g][v]]) for v in pool[g]} for g in ("fixed", "a", "b")}
        gap = np.concatenate([best["gap"], pool["gap"]])
        keep = np.argsort(-gap)[:16]
        out = {g: {v: x[keep] for v, x in merged[g].items()} for g in merged}
        out["gap"] = gap[keep]
        return out

    # -- evaluation ----------------------------------------------------------------------------------
    def _plan(self, node: int):
        if node not in self._plans:
            from .evaluate import compile_network

            self._plans[node] = compile_network(self.net, [node])
        return self._plans[node]

    def _gaps(self, node: int, cand: dict, wrt, fixed, sign: float):
        """Relative Jensen gaps (positive = violation) of every candidate, at its worst entry."""
        n = len(next(iter(cand["a"].values())))
        env = {v: np.concatenate([x, x, x]) for v, x in cand["fixed"].items()}
        for v in wrt:
            a, b = cand["a"][v], cand["b"][v]
            env[v] = np.concatenate([a, b, (a + b) / 2])
        try:
            with np.errstate(all="ignore"):
                out = self._plan(node).forward(env, batched=set(env))
        except (FloatingPointError, ValueError, ZeroDivisionError, OverflowError):
            return None, None
        y = out[node] if node in out else out[self.net.nodes[node].label]
        y = np.asarray(y, dtype=float).reshape(3 * n, -1)
        fa, fb, fm = y[:n], y[n:2 * n], y[2 * n:]
        with np.errstate(all="ignore"):
            gap = sign * (fm - (fa + fb) / 2)
            rel = gap / (np.abs(fa) + np.abs(fb) + np.abs(fm) + 1e-300)
        rel = np.where(np.isfinite(fa) & np.isfinite(fb) & np.isfinite(fm) & np.isfinite(rel), rel, -np.inf)
        worst = rel.max(axis=1)
        return worst, (fa, fb, fm, rel.argmax(axis=1))

    # -- checking a candidate ------------------------------------------------------------------------
    def _confirm(self, node: int, point: dict, sign: float, rel: float) -> dict | None:
        """The witness at `point` (one candidate), simplified first when it holds many numbers: a simpler
        point is cheaper to check and to print. When the simpler one does not survive, the point itself."""
        if _numbers(point) > SIMPLIFY_ABOVE:
            simple = self._simplify(node, point, sign, rel)
            if simple is not point:
                witness = self._verify(node, simple, sign)
                if witness is not None:
                    return witness
        return self._verify(node, point, sign)

    def _simplify(self, node: int, point: dict, sign: float, rel: float) -> dict:
        """Fewer moving variables and constant fixed arrays, as long as the float gap stays clearly real.

        Largest first: a variable that need not move for the gap to show is held at its value in `a`; a
        fixed array that can be one number (0, else 1/fan-in for a matrix, else its mean to two digits, within
        its constraint) becomes it. Only a suggestion: the result is checked in high precision like any candidate.
        """
        keep = max(10 * NOISE, 0.01 * min(rel, 1e-4))
        current = point
        for v in sorted(point["a"], key=self._size, reverse=True):
            if len(current["a"]) == 1:
                break
            trial = {"a": {k: x for k, x in current["a"].items() if k != v},
                     "b": {k: x for k, x in current["b"].items() if k != v},
                     "fixed": {**current["fixed"], v: current["a"][v]}}
            if self._point_gap(node, trial, sign) >= keep:
                current = trial
        for v in sorted(current["fixed"], key=self._size, reverse=True):
            values = np.asarray(current["fixed"][v], dtype=float)
            if values.size <= FILL_ABOVE or v in self.net.fixed or np.all(values == values.flat[0]):
                continue          # (values fixed by --params are what they are)
            # 0, else 1/fan-in for a matrix (activations stay of order one: a human-scale witness), else the mean
            fan_in = [1.0 / values.shape[-1]] if values.ndim == 2 else []
            for fill in (0.0, *fan_in, float(f"{float(np.mean(values)):.2g}")):
                var = self.net.variables[v]
                filled = np.full(values.shape, min(max(fill, var.bounds.lo), var.bounds.hi))
                trial = {**current, "fixed": {**current["fixed"], v: filled}}
                if self._point_gap(node, trial, sign) >= keep:
                    current = trial
                    break
        return current

    def _size(self, name: str) -> int:
        return self.net.nodes[self.net.variables[name].node].size

    def _point_gap(self, node: int, point: dict, sign: float) -> float:
        """The relative Jensen gap of one point in floats (-inf where it is not defined)."""
        cand = {g: {v: np.asarray(x, dtype=float)[None] for v, x in point[g].items()} for g in point}
        gaps, _ = self._gaps(node, cand, list(cand["a"]), list(cand["fixed"]), sign)
        return -np.inf if gaps is None else float(gaps[0])

    def _verify(self, node: int, point: dict, sign: float) -> dict | None:
        """Re-evaluate a point with DIGITS digits; the witness, or None if the gap does not survive."""
        import mpmath

        from .precise import OutsideDomain, evaluate_precise

        if not all(_exact_midpoint(point["a"][v], point["b"][v]) for v in point["a"]):
            return None  # the float midpoint is not the true one: not a checkable witness
        mid = {v: (np.asarray(point["a"][v]) + np.asarray(point["b"][v])) / 2 for v in point["a"]}
        results = []
        try:
            with mpmath.workdps(DIGITS):   # the fixed values, converted once for the three evaluations
                fixed_mp = {v: _to_mpf(x) for v, x in point["fixed"].items()}
                for at in (point["a"], point["b"], mid):
                    env = {**fixed_mp, **{v: _to_mpf(x) for v, x in at.items()}}
                    out = evaluate_precise(self.net, [node], env, dps=DIGITS)
                    results.append(_flat(out[node] if node in out else out[self.net.nodes[node].label]))
        except (OutsideDomain, ZeroDivisionError, ValueError, OverflowError):
            return None
        with mpmath.workdps(DIGITS):
            best = None
            for entry, (fa, fb, fm) in enumerate(zip(*results)):   # the entry with the largest relative gap
                gap = sign * (fm - (fa + fb) / 2)
                scale = abs(fa) + abs(fb) + abs(fm) + 1
                if gap > scale * mpmath.mpf(10) ** (-(DIGITS - 15)) and (best is None or gap / scale > best[0]):
                    best = (gap / scale, entry, fa, fb, fm, gap)
        if best is None:
            return None
        _, entry, fa, fb, fm, gap = best
        shape = self.net.nodes[node].shape
        index = list(np.unravel_index(entry, shape)) if shape else []
        return {"a": _lists(point["a"]), "b": _lists(point["b"]), "fixed": _lists(point["fixed"], compact=True),
                "index": [int(k) for k in index], "f_a": float(fa), "f_b": float(fb), "f_mid": float(fm),
                "gap": float(gap), "digits": DIGITS}


def _point(cand: dict, i: int) -> dict:
    return {g: {v: cand[g][v][i] for v in cand[g]} for g in ("fixed", "a", "b")}


def _numbers(point: dict) -> int:
    return sum(np.size(x) for g in ("fixed", "a", "b") for x in point[g].values())


_UNIT = 2.0 ** 30          # 1 / GRID


def _exact_midpoint(a, b) -> bool:
    """Is the float (a + b) / 2 exactly the midpoint of every pair of entries? Decided exactly.

    On the grid, a·2^30 and b·2^30 are integers below 2^52 (scaling by a power of two is exact), so their
    sum is an exact float too, and m·2^31 equals it only where m is the true midpoint. Entries off the grid
    (a bound like 0.1) are checked with fractions.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(all="ignore"):
        m = (a + b) / 2
        A, B, M = a * _UNIT, b * _UNIT, m * (2 * _UNIT)
        on_grid = (np.floor(A) == A) & (np.floor(B) == B) & (np.abs(A) < 2.0 ** 52) & (np.abs(B) < 2.0 ** 52)
        good = on_grid & (M == A + B)
    if good.all():
        return True
    try:
        return all(Fraction(x) + Fraction(y) == 2 * Fraction(z) for x, y, z in zip(a[~good], b[~good], m[~good]))
    except (ValueError, OverflowError):   # NaN or infinity: no midpoint to speak of
        return False


@functools.cache
def _from_float():
    import mpmath

    return np.frompyfunc(mpmath.mpf, 1, 1)


def _to_mpf(x):
    """Floats to mpf (exact), as the high-precision evaluator takes them; an array of one repeated value
    shares one mpf."""
    import mpmath

    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        return mpmath.mpf(float(arr))
    if arr.size and np.all(arr == arr.flat[0]) and not np.isnan(arr.flat[0]):
        return np.full(arr.shape, mpmath.mpf(float(arr.flat[0])), dtype=object)
    return _from_float()(arr).astype(object)


def _flat(value) -> list:
    return list(np.asarray(value, dtype=object).reshape(-1))


def _lists(values: dict, compact: bool = False) -> dict:
    """Values as nested lists; with `compact`, an array of more than FILL_ABOVE equal entries as that one
    number (it fills the declared shape)."""
    out = {}
    for k, v in values.items():
        arr = np.asarray(v, dtype=float)
        if compact and arr.size > FILL_ABOVE and np.all(arr == arr.flat[0]):
            out[k] = float(arr.flat[0])
        else:
            out[k] = arr.tolist()
    return out


def witness_arrays(net, witness: dict, group: str) -> dict:
    """The values of one group of a witness ("a", "b" or "fixed") as arrays of the declared shapes."""
    return {k: np.broadcast_to(np.asarray(v, dtype=float), net.variables[k].shape).copy()
            for k, v in witness[group].items()}
