"""Params: an initialisation inside every constraint, the projection back onto it, and its exact bounds.

The projection is what keeps a certified network certified: after every step each constrained param is put
back onto its declared interval exactly, in the param's own dtype (a float32 bound of 0.7 is the nearest
float32 inside [0.7, ...], never 0.69999999).
"""
from __future__ import annotations

import math

import numpy as np

from ..graph import Network, Node


def init_params(net: Network, rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    """Initial values for every param, each inside its declared interval.

    The role of a param is read off the DAG. A weight (an operand of `@`) with fan-in n gets:
    - unconstrained or with a constraint containing 0 on both sides: N(0, 1/n) (LeCun), clipped into
      [lo, hi];
    - lower bound 0 (the z-path of an input-convex network): the principled ICNN initialisation of Hoedt &
      Klambauer (NeurIPS 2023): log-normal weights whose mean² = ρ / f_c(n) and variance = 2(1 - ρ)/n, with
      target correlation ρ = 1/2 and unit target variance, which keep the mean and the correlation of the
      signal from drifting through layers of nonnegative weights; the bias added next to such a product is
      shifted by -n·sqrt(mean²/(2π)) to centre the pre-activation. Then clipped to the upper bound, if any;
    - upper bound 0: the mirror image; another one-sided or bounded interval: a uniform draw inside it.
    Any other param (a bias, a scalar gain) starts at 0 (or the ICNN shift), clipped into [lo, hi].

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x[3]\\nparam W[4, 3] >= 0, b[4]\\ny = relu(W @ x + b)\\n")
    >>> p = init_params(net, np.random.default_rng(0))
    >>> bool((p["W"] >= 0).all()), p["b"].shape, bool((p["b"] < 0).all())
    (True, (4,), True)
    """
    fan_in, shifts = _roles(net)
    out = {}
    for name in net.params:
        var = net.variables[name]
        lo, hi = var.bounds.lo, var.bounds.hi
        n = fan_in.get(name)
        if n is None:
            value = np.full(var.shape, shifts.get(name, 0.0))
        elif lo == 0 and hi > 0:
            value = _icnn_weights(rng, var.shape, n)
        elif hi == 0 and lo < 0:
            value = -_icnn_weights(rng, var.shape, n)
        elif lo <= 0 <= hi:
            value = rng.normal(0.0, 1.0 / math.sqrt(n), var.shape)
        else:
            a = lo if math.isfinite(lo) else hi - 1.0
            b = hi if math.isfinite(hi) else lo + 1.0
            value = rng.uniform(a, b, var.shape)
        out[name] = np.asarray(np.clip(value, lo, hi), dtype=dtype)   # an array even for a scalar param
    return out


_ICNN_CORR = 0.5


def _icnn_moments(n: int) -> tuple[float, float]:
    """(mean², variance) of the weights for fan-in n (Hoedt & Klambauer 2023, eqs. 35 and their code)."""
    rho = _ICNN_CORR
    mix = math.sqrt(1 - rho * rho) + rho * math.acos(-rho)
    f_c = n * (math.pi - n + (n - 1) * mix) / (2 * math.pi)
    return rho / f_c, 2 * (1 - rho) / n


def _icnn_weights(rng: np.random.Generator, shape: tuple, n: int) -> np.ndarray:
    mean_sq, var = _icnn_moments(n)
    log_mom2 = math.log(mean_sq + var)
    mu = math.log(mean_sq) - log_mom2 / 2
    sigma = math.sqrt(log_mom2 - math.log(mean_sq))
    return np.exp(rng.normal(mu, sigma, shape))


def _roles(net: Network) -> tuple[dict[str, int], dict[str, float]]:
    """Fan-in of each param used as a matmul operand; the ICNN bias shift of biases next to W ≥ 0."""
    var_of = {v.node: v for v in net.variables.values() if v.kind == "param"}
    fan_in: dict[str, int] = {}
    consumers: dict[int, list[Node]] = {}
    for node in net.nodes:
        for a in node.args:
            consumers.setdefault(a, []).append(node)
        if node.op == "matmul":
            left, right = node.args
            if left in var_of:
                fan_in.setdefault(var_of[left].name, net.nodes[left].shape[-1])
            if right in var_of:
                fan_in.setdefault(var_of[right].name, net.nodes[right].shape[0])
    shifts: dict[str, float] = {}
    for node in net.nodes:
        left = node.args[0] if node.op == "matmul" else None
        if left not in var_of or var_of[left].bounds.lo != 0 or var_of[left].name not in fan_in:
            continue
        mean_sq, _ = _icnn_moments(fan_in[var_of[left].name])
        shift = -fan_in[var_of[left].name] * math.sqrt(mean_sq / (2 * math.pi))
        for bias in _added_params(node, consumers, var_of, net):
            if bias not in fan_in:
                shifts.setdefault(bias, shift)
    return fan_in, shifts


def _added_params(node: Node, consumers: dict, var_of: dict, net: Network) -> list[str]:
    """Params summed together with `node` in the chain of `+` above it."""
    found, stack, seen = [], [node.id], set()
    while stack:
        for c in consumers.get(stack.pop(), []):
            if c.op != "add" or c.id in seen:
                continue
            seen.add(c.id)
            stack.append(c.id)
            found += [var_of[a].name for a in c.args if a in var_of and net.nodes[a].shape == node.shape]
    return found


def project_params(net: Network, params: dict[str, np.ndarray]) -> None:
    """Clip every constrained param onto its declared interval, in place (scalars are replaced in the dict),
    so that `lo <= value <= hi` holds exactly: in float32 a bound like 0.7 rounds to 0.69999999, so the
    clip uses the nearest float32 inside the interval.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x\\nparam w[2] in [0, 1]\\ny = sum(w * x)\\n")
    >>> p = {"w": np.array([-0.5, 2.0])}
    >>> project_params(net, p); p["w"].tolist()
    [0.0, 1.0]
    >>> net = load_text("input x\\nparam w[2] in [0.7, 1.1]\\ny = sum(w * x)\\n")
    >>> p = {"w": np.array([0.0, 2.0], dtype=np.float32)}
    >>> project_params(net, p); bool(p["w"][0] >= 0.7 and p["w"][1] <= 1.1)
    True
    """
    bounds = param_bounds(net, params)
    for name, value in params.items():
        if name not in bounds:
            continue
        lo, hi = bounds[name]
        if isinstance(value, np.ndarray) and value.flags.writeable:
            if hi == math.inf:                  # one-sided: a single cheap pass (np.clip is slower)
                np.maximum(value, lo, out=value)
            elif lo == -math.inf:
                np.minimum(value, hi, out=value)
            else:
                np.clip(value, lo, hi, out=value)
        else:                                   # a NumPy scalar cannot be written into: replace it
            params[name] = np.clip(value, lo, hi)


def param_bounds(net: Network, params: dict[str, np.ndarray]) -> dict[str, tuple]:
    """(lo, hi) of every constrained param among `params`, as numbers of its dtype inside the declared interval
    (what the optimizers clip onto, in the same pass as their update)."""
    out = {}
    for name, value in params.items():
        var = net.variables.get(name)
        if var is not None and (var.bounds.lo > -math.inf or var.bounds.hi < math.inf):
            out[name] = _inside_bounds(var.bounds.lo, var.bounds.hi, np.asarray(value).dtype)
    return out


def _inside_bounds(lo: float, hi: float, dtype) -> tuple[float, float]:
    """The bounds as numbers of `dtype` that lie inside [lo, hi] (a float64 bound is exact already)."""
    if np.dtype(dtype) == np.float64:
        return lo, hi
    kind = np.dtype(dtype).type
    low, high = kind(lo), kind(hi)
    if math.isfinite(lo) and float(low) < lo:
        low = np.nextafter(low, kind(np.inf))
    if math.isfinite(hi) and float(high) > hi:
        high = np.nextafter(high, kind(-np.inf))
    return low, high


def violations(net: Network, params: dict[str, np.ndarray]) -> list[str]:
    """The params outside their declared interval (compared exactly, in float64); empty when all hold."""
    bad = []
    for name, value in params.items():
        b = net.variables[name].bounds
        wide = np.asarray(value, dtype=np.float64)
        if wide.size and (wide.min() < b.lo or wide.max() > b.hi):
            bad.append(f"`{name}` leaves [{b.lo:g}, {b.hi:g}] (min {wide.min()!r}, max {wide.max()!r})")
    return bad
