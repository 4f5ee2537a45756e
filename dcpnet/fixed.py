"""Params fixed to known values: the analysis of one trained network rather than of the family.

`dcpnet check NET --params P.npz` and `verify(..., params=...)` turn every param (and every `const`) into a
constant with exactly those values. The rules read each one's range as the hull [min, max] of its entries,
so a proof holds for every weight in those boxes, the trained ones among them; the refuter uses exactly the
values (see `Refuter._snap`), so a refutation is one of the trained network, never of other weights inside
the hull.

>>> import numpy as np
>>> from dcpnet.graph import load_text
>>> net = load_text("input x[2]\\nparam W[2, 2]\\ny = sum(softplus(W @ softplus(x)))\\n")
>>> fixed = fix_params(net, {"W": np.array([[1.0, 2.0], [0.5, 0.0]])})
>>> fixed.params, fixed.variables["W"].bounds
([], Interval(lo=0.0, hi=2.0))
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace

import numpy as np

from .errors import DcpnetError, Diagnostic
from .graph import Network
from .lattice import Interval


def fix_params(net: Network, values: dict, file: str = "<params>", free=(), checks: bool = True) -> Network:
    """The network with each param (but those in `free`) and each const fixed to its array in `values`.

    Every param and const fixed must be there with its declared shape, finite, inside its constraint; with
    `checks`, a check line of the network that asks about a fixed param is bad input (it would be a question
    about a constant).
    """
    names = [p for p in net.params if p not in free] + [c for c in net.consts if c not in net.fixed]
    arrays = {name: _value(net, values, name, file) for name in names}
    if checks:
        _refuse_checks_on(net, set(arrays))
    variables = dict(net.variables)
    for name, value in arrays.items():
        hull = Interval(float(value.min()), float(value.max()))
        variables[name] = replace(variables[name], kind="const", bounds=hull)
    return replace(net, variables=variables, fixed={**net.fixed, **arrays})


def load_fixed(net: Network, path) -> tuple[Network, str]:
    """`fix_params` with the arrays of an .npz file, and the file's SHA-256 (recorded in the JSON report)."""
    from .train.data import read_npz

    arrays = read_npz(path)
    try:
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    except OSError as err:   # read_npz has read it already: only a race gets here
        raise DcpnetError(Diagnostic(f"cannot read the file: {err.strerror}", os.fspath(path), 1, 1)) from None
    return fix_params(net, arrays, os.fspath(path)), digest


def _value(net: Network, values: dict, name: str, file: str) -> np.ndarray:
    var = net.variables[name]
    what = f"{var.kind} `{name}`"
    if name not in values:
        held = ", ".join(f"`{k}`" for k in values) or "no arrays"
        raise DcpnetError(Diagnostic(f"{what} is missing (the file holds {held})", file, 1, 1))
    value = np.asarray(values[name])
    if value.shape != var.shape:
        raise DcpnetError(Diagnostic(f"{what} has shape {value.shape}; expected {var.shape}", file, 1, 1))
    if value.dtype.kind not in "biuf":
        raise DcpnetError(Diagnostic(f"{what} has dtype {value.dtype}; expected real numbers", file, 1, 1))
    value = value.astype(np.float64)
    if not np.all(np.isfinite(value)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
        raise DcpnetError(Diagnostic(f"{what} holds a non-finite value ({value[bad]!r} at index {bad})", file, 1, 1))
    lo, hi = var.bounds.lo, var.bounds.hi
    if value.size and (value.min() < lo or value.max() > hi):
        raise DcpnetError(Diagnostic(f"{what} violates its declared constraint [{lo:g}, {hi:g}]", file, 1, 1))
    return value


def _refuse_checks_on(net: Network, fixed: set[str]) -> None:
    for c in net.checks:
        for name, pos in c.wrt:
            asked = net.resolve_wrt([name])
            if any(v in fixed for v in asked):
                what = "every param" if name == "params" else f"`{name}`"
                raise net.source.error(f"this check asks about {what}, which --params fixes to its trained "
                                       f"values; check it in the inputs instead", pos.line, pos.col)
