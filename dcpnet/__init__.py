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
           "load_text",
           "verify",
]


_LAZY = {"from_torch": "dcpnet.interop.from_torch", "from_onnx": "dcpnet.interop.from_onnx"}


def __getattr__(name: str):
    """The importers load on first use: `dcpnet check` never loads them, nor torch or onnx."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dcpnet' has no attribute {name!r}")
