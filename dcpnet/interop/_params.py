"""Param values handed to an exporter: every param present, of its declared shape, finite, inside its constraint.

A value outside its declared set would void the certificate the export relies on, so it is bad input (checked
in float64, before any rounding to a narrower dtype), like a bad PARAMS.npz.
"""
from __future__ import annotations

import numpy as np

from ..errors import DcpnetError, Diagnostic
from ..graph import Network


def _fail(net: Network, message: str, line: int = 1, col: int = 1) -> DcpnetError:
    return DcpnetError(Diagnostic(message, net.source.file, line, col))


def as_array(value) -> np.ndarray:
    """A NumPy float64 copy of an array, a number or a torch tensor (on any device, with or without grad)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()                 # NumPy has no bfloat16; float32 holds it exactly
        value = value.numpy()
    return np.array(value, dtype=np.float64)


def default_params(net: Network) -> dict[str, np.ndarray]:
    """The params `dcpnet train` starts from (its default seed 0): `init_params` on the trainer's stream."""
    from ..train.loop import seed_streams
    from ..train.params import init_params

    rng = seed_streams(0)[0]
    out = {k: np.array(v, dtype=np.float64) for k, v in init_params(net, rng, np.float64).items()}
    return {**out, **const_values(net, {})}


def const_values(net: Network, given: dict, what: str = "params", skip=()) -> dict[str, np.ndarray]:
    """The arrays of the network's `const` declarations (but those in `skip`): given with the params, or
    fixed in the network."""
    out = {}
    for name in net.consts:
        if name in skip:
            continue
        var = net.variables[name]
        if name in given:
            out[name] = check_value(net, name, as_array(given[name]), what)
        elif name in net.fixed:
            out[name] = np.array(net.fixed[name], dtype=np.float64)
        else:
            raise _fail(net, f"{what}: const `{name}` needs a value (give it with the params)", var.line, var.col)
    return out


def checked_params(net: Network, params: dict, names: list[str] | None = None,
                   what: str = "params") -> dict[str, np.ndarray]:
    """float64 arrays for the params `names` (default all), each checked against its declaration."""
    out = {}
    if not hasattr(params, "keys"):
        raise _fail(net, f"{what} must be a mapping from param name to value, got {type(params).__name__}")
    for name in net.params if names is None else names:
        var = net.variables[name]
        if name not in params:
            raise _fail(net, f"{what}: param `{name}` is missing", var.line, var.col)
        try:
            value = as_array(params[name])
        except (TypeError, ValueError) as err:
            raise _fail(net, f"{what}: param `{name}` is not an array of numbers ({err})", var.line, var.col) from None
        out[name] = check_value(net, name, value, what)
    if names is None:
        out.update(const_values(net, params, what))
    return out


def check_value(net: Network, name: str, value: np.ndarray, what: str) -> np.ndarray:
    """`value` if it has `name`'s declared shape, is finite and lies in its declared interval."""
    var = net.variables[name]
    kind = var.kind
    if value.shape != var.shape:
        raise _fail(net, f"{what}: {kind} `{name}` has shape {value.shape}; expected {var.shape}", var.line, var.col)
    if not np.all(np.isfinite(value)):
        raise _fail(net, f"{what}: {kind} `{name}` holds a non-finite value", var.line, var.col)
    lo, hi = var.bounds.lo, var.bounds.hi
    if value.size and (value.min() < lo or value.max() > hi):
        worst = value.min() if value.min() < lo else value.max()
        raise _fail(net, f"{what}: {kind} `{name}` violates its constraint [{lo:g}, {hi:g}] (value {worst!r})",
                    var.line, var.col)
    return value
