"""dcpnet: prove or refute the convexity of neural networks, in the style of disciplined convex programming.

>>> import dcpnet
>>> net = dcpnet.load_text("input x[3]\\nparam W[2, 3] >= 0\\ny = sum(relu(W @ relu(x)))\\n")
>>> dcpnet.verify(net, "y", ["x"], budget=0).convex.verdict.value
'proved'
"""
from .errors import DcpnetError
from .graph import Network, load, load_text
from .lattice import Curvature, Verdict
from .verify import Result, Verifier, check_file, check_network, verify

__version__ = "0.1.0"


def load_params(net: Network, path, dtype=None) -> dict:
    """PARAMS.npz read against `net`'s declarations (one float64 array per param, inside its constraint)."""
    import numpy as np

    from .train.data import load_params as read

    return read(net, path, np.float64 if dtype is None else dtype)


def to_torch(net: Network, params: dict | None = None, dtype=None):
    """`net` as a torch.nn.Module (see dcpnet.interop.to_torch); torch is imported on call."""
    from .interop.to_torch import to_torch as convert

    return convert(net, params, dtype)


def save_params(module, path) -> None:
    """Write a module's params to PARAMS.npz, as `dcpnet eval/check --params` read it."""
    from .interop.to_torch import save_params as save

    save(module, path)


def to_cvxpy(net: Network, output: str, params: dict, fixed: dict | None = None):
    """`(expr, variables, constraints)`: `output` as a CVXPY expression (see dcpnet.interop.to_cvxpy)."""
    from .interop.to_cvxpy import to_cvxpy as convert

    return convert(net, output, params, fixed)


__all__ = [
    "Curvature",
    "DcpnetError",
    "Network",
    "Result",
    "Verdict",
    "Verifier",
    "check_file",
    "check_network",
    "from_onnx",
    "from_torch",
    "load",
    "load_params",
    "load_text",
    "save_params",
    "to_cvxpy",
    "to_torch",
    "verify",
]


_LAZY = {"from_torch": "dcpnet.interop.from_torch", "from_onnx": "dcpnet.interop.from_onnx"}


def __getattr__(name: str):
    """The importers load on first use: `dcpnet check` never loads them, nor torch or onnx."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dcpnet' has no attribute {name!r}")
