"""Training what was certified, kept certified: params, optimizers, data, the loop and the re-check.

    params.py    init_params, project_params, param_bounds, violations
    optim.py     Adam and SGD in place, with the projection in the same pass
    data.py      PARAMS.npz / DATA.npz / arrays checked against the network; save_npz
    loop.py      train(): minibatches, validation, early stopping, a stop on non-finite values
    certified.py the file's check lines re-verified for the trained params

Names are imported on first use, so `dcpnet.train.data` (which `eval` and `check --params` read files with)
does not bring the loop along.
"""
from __future__ import annotations

import importlib

_HOME = {
    "train": "loop", "TrainResult": "loop", "Tick": "loop", "mean_loss": "loop", "shuffles": "loop",
    "seed_streams": "loop", "check_options": "loop", "tune_malloc": "loop", "ADAM_BETAS": "loop", "ADAM_EPS": "loop",
    "init_params": "params", "project_params": "params", "param_bounds": "params", "violations": "params",
    "load_params": "data", "load_data": "data", "check_inputs": "data", "read_npz": "data", "save_npz": "data",
    "pinned": "certified", "recheck": "certified", "Recheck": "certified",
    "Adam": "optim", "SGD": "optim", "OPTIMIZERS": "optim",
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(_HOME)


__all__ = list(_HOME)
