"""Reading PARAMS.npz and DATA.npz (or arrays handed over in Python) against a network's declarations, and
writing .npz files atomically.

Every problem with a file is bad input: a `DcpnetError` whose diagnostic names the file and the array
(`D.npz:1:1: error: input `x` has shape (5, 3); expected (n, 4)`), never a traceback. Arrays the network
does not declare are ignored; missing, misshapen, non-numeric, non-finite or out-of-constraint ones are not.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DcpnetError, Diagnostic, write_atomically
from ..graph import Network, Variable


def _fail(path, message: str) -> DcpnetError:
    return DcpnetError(Diagnostic(message, os.fspath(path), 1, 1))


def read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an .npz file; an unreadable, corrupt or pickled file is bad input."""
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as err:
        raise _fail(path, f"cannot read the file: {getattr(err, 'strerror', None) or _why(err)}") from None
    except Exception as err:  # noqa: BLE001 - zip, zlib, pickle and format errors all mean a bad file
        raise _fail(path, f"not a valid .npz file: {_why(err)}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _fail(path, "not an .npz archive (a single .npy array?)")
    with archive:
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except Exception as err:  # noqa: BLE001 - a corrupt member fails in many ways
                raise _fail(path, f"array `{name}` cannot be read: {_why(err)}") from None
            if not isinstance(arrays[name], np.ndarray):  # NumPy hands back raw bytes for a non-.npy member
                raise _fail(path, f"array `{name}` is not a .npy array")
        return arrays


def _why(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _numeric(path, what: str, value: np.ndarray, dtype) -> np.ndarray:
    if value.dtype.kind not in "biuf":
        raise _fail(path, f"{what} has dtype {value.dtype}; expected real numbers")
    if not np.all(np.isfinite(value)):
        bad = np.argwhere(~np.isfinite(value))[0]
        raise _fail(path, f"{what} holds a non-finite value ({value[tuple(bad)]!r} at index "
                          f"{tuple(int(i) for i in bad)})")
    with np.errstate(over="ignore"):
        cast = value.astype(dtype)
    if not np.all(np.isfinite(cast)):
        raise _fail(path, f"{what} holds values too large for {np.dtype(dtype).name}")
    return cast


def _within(path, what: str, var: Variable, value: np.ndarray) -> None:
    lo, hi = var.bounds.lo, var.bounds.hi
    if value.size and (value.min() < lo or value.max() > hi):
        worst = value.min() if value.min() < lo else value.max()
        raise _fail(path, f"{what} violates its constraint [{lo:g}, {hi:g}] (value {worst:g})")


def load_params(net: Network, path, dtype=np.float64, check_bounds: bool = True) -> dict[str, np.ndarray]:
    """One array per param and const, with its declared shape (and inside its constraint, with `check_bounds`)."""
    arrays = read_npz(path)
    out = {}
    for name in net.params + net.consts:     # a `const` (e.g. an imported running mean) comes with the params
        var = net.variables[name]
        if name not in arrays:
            raise _fail(path, f"{var.kind} `{name}` is missing (the file holds {_listing(arrays)})")
        value = arrays[name]
        what = f"{var.kind} `{name}`"
        if value.shape != var.shape:
            raise _fail(path, f"{what} has shape {value.shape}; expected {var.shape}")
        value = _numeric(path, what, value, np.float64)
        if check_bounds:                        # in float64, before any rounding to float32
            _within(path, what, var, value)
        out[name] = _numeric(path, what, value, dtype)
    return out


def load_data(net: Network, path, dtype=np.float64, check_bounds: bool = True) -> tuple[dict[str, np.ndarray], int]:
    """One array per input with a leading example axis, and the number of examples n (see `check_inputs`)."""
    return check_inputs(net, read_npz(path), dtype, os.fspath(path), check_bounds)


def check_inputs(net: Network, arrays: dict, dtype=np.float64, where: str | None = None,
                 check_bounds: bool = True) -> tuple[dict[str, np.ndarray], int]:
    """The arrays of every input, checked and cast to `dtype`, and the number of examples n >= 1.

    A scalar input is (n,), an input `x[4]` is (n, 4); every input has the same n. One function for
    `DATA.npz` on the command line and for the arrays handed to `train` in Python; `where` names the file
    in the diagnostics (the network's file when None).
    """
    where = net.source.file if where is None else where
    if not net.inputs:
        raise _fail(where, "the network declares no input: there are no examples")
    out: dict[str, np.ndarray] = {}
    n, first = None, None
    for name in net.inputs:
        var = net.variables[name]
        if name not in arrays:
            raise _fail(where, f"input `{name}` is missing (the data holds {_listing(arrays)})")
        value = np.asarray(arrays[name])
        what = f"input `{name}`"
        expected = "(n" + "".join(f", {s}" for s in var.shape) + ")"
        if value.ndim != len(var.shape) + 1 or value.shape[1:] != var.shape:
            raise _fail(where, f"{what} has shape {value.shape}; expected {expected}: a leading example "
                               f"axis, then the declared shape")
        if value.shape[0] == 0:
            raise _fail(where, f"{what} holds no examples")
        if n is not None and value.shape[0] != n:
            raise _fail(where, f"{what} has {value.shape[0]} examples, but `{first}` has {n}")
        n, first = value.shape[0], name
        value = _numeric(where, what, value, np.float64)
        if check_bounds:
            _within(where, what, var, value)
        out[name] = _numeric(where, what, value, dtype)
    return out, n


def _listing(arrays: dict) -> str:
    return ", ".join(f"`{k}`" for k in arrays) if arrays else "no arrays"


def save_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz file atomically (no half-written file), with the user's umask."""
    write_atomically(path, lambda fh: np.savez(fh, **arrays))
