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
           "load",
           "load_text",
           "verify",
]
