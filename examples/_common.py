"""Helpers shared by the training examples: the package on the path, the certificate re-checked after training."""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))          # run from a checkout: `python examples/train_....py`

import numpy as np

from dcpnet.graph import load
from dcpnet.train import recheck, violations


def load_example(name: str):
    return load(os.path.join(HERE, name))


def report_certificate(net, params, seed: int = 0) -> list:
    """Print whether every constraint holds exactly and each check line of the file, for the trained params."""
    bad = violations(net, params)
    constrained = [n for n in net.params if np.isfinite(net.variables[n].bounds.lo)
                   or np.isfinite(net.variables[n].bounds.hi)]
    if bad or constrained:
        print("constraints: " + ("; ".join(bad) if bad else
                                 f"every one holds exactly for the trained params ({', '.join(constrained)})"))
    checks = recheck(net, params, seed=seed, budget=2.0)
    for c in checks:
        pinned = f" (trained params pinned: {c.pinned})" if c.pinned else ""
        print(f"  {'ok ' if c.holds else 'NOT'} {c.text}: {c.declared}{pinned}")
    return checks


def jensen_gaps(f, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """f((a+b)/2) - (f(a)+f(b))/2 for each pair of rows: <= 0 (up to rounding) where f is convex."""
    return f((a + b) / 2) - (f(a) + f(b)) / 2
