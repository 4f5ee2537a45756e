"""The example scripts as modules, for the tests that run them (`example("train_icnn_diabetes").main([...])`)."""
from __future__ import annotations

import importlib
import sys

from conftest import EXAMPLES


def example(name: str):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def all_hold(checks) -> bool:
    """Every re-checked line of a training run holds, and is proved again with the trained params pinned."""
    return bool(checks) and all(c.holds for c in checks) and all(c.pinned in (None, "proved") for c in checks)
