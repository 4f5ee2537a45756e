"""`dcpnet export`: a network written out as a Python file for another library, atomically.

`--to torch` writes the module `to_torch` builds (self-contained: it imports torch only); `--to cvxpy` writes
`objective(params, fixed)` and `problem(params, fixed)` for one output proved convex in the free inputs
(numpy and cvxpy only). Neither needs torch or cvxpy installed to *write* the file.
"""
from __future__ import annotations

import os
import tempfile

from ..errors import DcpnetError, Diagnostic
from ..graph import Network

TARGETS = ("torch", "cvxpy")


def export_source(net: Network, to: str, outputs: list[str] | None = None, fixed: list[str] = ()) -> str:
    """The file's text: for torch, a module computing `outputs` (default all); for cvxpy, the problem of
    minimising the one output named (default the first) over the inputs not in `fixed`."""
    for name in outputs or []:
        if name not in net.names:
            raise _fail(net, f"--output: unknown name `{name}`")
    for name in fixed:
        if name not in net.variables or net.variables[name].kind != "input":
            raise _fail(net, f"--fixed: `{name}` is not an input of the network (inputs: {', '.join(net.inputs)})")
    if to == "torch":
        if fixed:
            raise _fail(net, "--fixed applies to --to cvxpy only")
        from .to_torch import torch_source

        return torch_source(net, outputs)
    if to == "cvxpy":
        from .to_cvxpy import cvxpy_source

        chosen = outputs or net.outputs[:1]
        if len(chosen) != 1:
            raise _fail(net, "--to cvxpy minimises one output: give one name to --output")
        if net.node(chosen[0]).shape:
            raise _fail(net, f"`{chosen[0]}` is not a scalar: CVXPY minimises a scalar (sum(...) or max(...) of it)")
        return cvxpy_source(net, chosen[0], list(fixed))
    raise _fail(net, f"--to must be one of {', '.join(TARGETS)}, got {to!r}")


def write_text(path: str, text: str) -> None:
    """Write a file atomically: a temporary file beside it, then a rename (nothing half-written)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DcpnetError(Diagnostic("cannot write the file: it is a directory", path, 1, 1))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dcpnet-", suffix=".py", dir=folder)
    except OSError as err:
        raise DcpnetError(Diagnostic(f"cannot write the file: {err.strerror or err}", path, 1, 1)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise DcpnetError(Diagnostic(f"cannot write the file: {err.strerror or err}", path, 1, 1)) from None
        raise


def export(path_in: str, to: str, out: str, outputs: list[str] | None = None, fixed: list[str] = ()) -> str:
    """Read a `.net` file and write its export to `out`; returns a one-line summary."""
    from ..graph import load

    net = load(path_in)
    write_text(out, export_source(net, to, outputs, fixed))
    what = "a torch module" if to == "torch" else "a CVXPY problem"
    return f"wrote {out}: {what} for {path_in}"


def _fail(net: Network, message: str) -> DcpnetError:
    return DcpnetError(Diagnostic(message, net.source.file, 1, 1))
