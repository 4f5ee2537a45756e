"""Training what was certified: minibatch Adam or SGD on the mean of a scalar output, projected onto constraints.

After every step each constrained param is put back onto its declared interval, exactly (no -1e-17 below a
bound of 0), so every proof that `dcpnet check` gives under the declared constraints still covers the trained
weights. A step whose loss or gradient is not finite stops training and keeps the params at which the last
finite step was taken; a validation split keeps the params of the best validation epoch.

>>> from dcpnet.graph import load_text
>>> net = load_text("input x\\ninput y\\nparam w >= 0, b\\nloss = (w * x + b - y)^2\\n")
>>> x = np.linspace(-1, 1, 64)
>>> res = train(net, {"x": x, "y": 3 * x + 1}, "loss", epochs=200, batch=16, lr=0.05, seed=0)
>>> round(float(res.params["w"]), 3), round(float(res.params["b"]), 3), res.reason
(3.0, 1.0, 'finished 200 epochs')
"""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from ..errors import DcpnetError, Diagnostic, did_you_mean
from ..evaluate import compile_network
from ..graph import Network
from .data import check_inputs
from .optim import OPTIMIZERS
from .params import init_params, param_bounds, project_params, violations

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8           # torch.optim.Adam's defaults, as optim.Adam's
CHUNK = 1 << 14                                  # examples per forward pass when measuring a loss


@dataclass
class Tick:
    """What a progress callback is told after every step (and `epoch_done` once per epoch)."""

    epoch: int                                   # from 1
    epochs: int
    step: int                                    # from 1, within the epoch
    steps: int                                   # per epoch
    loss: float                                  # running mean of the epoch's minibatch losses
    val: float | None = None                     # the last validation loss
    epoch_done: bool = False


@dataclass
class TrainResult:
    """The trained params and how training went.

    `history["train"]` holds each epoch's running mean of its minibatch losses, `history["val"]` the loss on
    the held-out examples after each epoch (empty without a validation split).
    """

    params: dict[str, np.ndarray]
    history: dict[str, list[float]] = field(default_factory=lambda: {"train": [], "val": []})
    stopped_early: bool = False
    reason: str = ""
    best_epoch: int | None = None                # the epoch whose params were kept (validation only)
    steps: int = 0
    val_index: np.ndarray | None = None          # which examples were held out for validation


# ----------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------

def train(net: Network, data: dict[str, np.ndarray], loss: str, *, epochs: int = 10, batch: int = 64,
          lr: float = 1e-2, optimizer: str = "adam", seed: int = 0, init: dict[str, np.ndarray] | None = None,
          val: float = 0.0, patience: int | None = None, dtype=np.float64, progress=None) -> TrainResult:
    """Minimise the mean of the scalar `loss` over the examples of `data` (one array per input, leading axis).

    Minibatches of `batch` examples are drawn in an order shuffled every epoch; the params start from
    `init` (every param, inside its constraint) or from `init_params`. Everything random comes from `seed`,
    so a run is reproducible. With `val` > 0 that fraction of the examples is held out, the params of the
    best validation epoch are returned, and `patience` stops after that many epochs without improvement.
    `progress(tick)` is called after every step with a `Tick`. Bad arguments raise `DcpnetError`.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x[2]\\ninput t in [0, 1]\\nparam w[2], c\\nloss = softplus(w @ x + c) - t * (w @ x + c)\\n")
    >>> x = np.random.default_rng(1).normal(size=(200, 2)); t = (x[:, 0] > x[:, 1]).astype(float)
    >>> res = train(net, {"x": x, "t": t}, "loss", epochs=30, batch=20, lr=0.1, val=0.25, patience=5)
    >>> res.history["train"][-1] < res.history["train"][0] < math.log(2) + 1e-9, bool(res.params["w"][0] > 0)
    (True, True)
    """
    tune_malloc()
    rng_init, rng_split, _ = seed_streams(seed)
    dtype = np.dtype(dtype).type
    check_options(net, loss, epochs, batch, lr, optimizer, val, patience)
    data, n = check_inputs(net, data, dtype)
    params = _start(net, init, rng_init, dtype)
    held = _split(n, val, rng_split, net.source.file)
    kept = np.setdiff1d(np.arange(n), held) if held is not None else None
    train_data = data if held is None else {k: v[kept] for k, v in data.items()}
    val_data = {} if held is None else {k: v[held] for k, v in data.items()}
    # the optimizer clips constrained params onto their bounds in its own pass: the projection
    trainable = {k: params[k] for k in net.params}   # the same arrays: consts ride along, never updated
    loop = _Loop(net, loss, params, OPTIMIZERS[optimizer](trainable, lr, bounds=param_bounds(net, trainable)),
                 dtype, progress)
    loop.result.val_index = held
    n_train = n - (0 if held is None else len(held))
    return loop.run(train_data, n_train, val_data, epochs, batch, patience, shuffles(seed, n_train))


def seed_streams(seed: int) -> list[np.random.Generator]:
    """Independent generators for the initial params, the validation split and the minibatch order."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def shuffles(seed: int, n: int):
    """The order of the n training examples in each epoch, as `train` draws them for `seed` (endless).

    Minibatch k of an epoch is `order[k * batch:(k + 1) * batch]`, so another framework can replay a run.
    """
    rng = seed_streams(seed)[2]
    while True:
        yield rng.permutation(n)


class _Loop:
    def __init__(self, net: Network, loss: str, params: dict, opt, dtype, progress):
        self.net, self.loss, self.params, self.opt, self.dtype = net, loss, params, opt, dtype
        self.plan = compile_network(net, [loss], dtype)
        self.inputs = set(net.inputs)
        self.wrt = set(net.params)
        self.progress = progress
        self.result = TrainResult(params)
        self.last = None                             # the params before the latest step

    def run(self, data, n, val_data, epochs, batch, patience, orders) -> TrainResult:
        res, hist = self.result, self.result.history
        steps = -(-n // batch)
        best, best_params, waited = math.inf, None, 0
        for epoch in range(1, epochs + 1):
            running = self._epoch(data, next(orders), epoch, epochs, batch, steps)
            if running is None:                      # stopped on a non-finite value
                break
            hist["train"].append(running)
            if val_data:
                v = mean_loss(self.net, self.params, val_data, self.loss, self.dtype, self.plan)
                hist["val"].append(v)
                if not math.isfinite(v):
                    self._stop(f"stopped after epoch {epoch}: the validation loss is {v} (an example outside "
                               "an atom's domain?)")
                    break
                if v < best:
                    best, best_params, waited, res.best_epoch = v, _copy(self.params), 0, epoch
                else:
                    waited += 1
            self._tick(Tick(epoch, epochs, steps, steps, running, hist["val"][-1] if val_data else None, True))
            if patience is not None and waited >= patience:
                res.stopped_early = True
                res.reason = (f"early stopping after epoch {epoch}: no validation improvement in {patience} "
                              f"epochs")
                break
        else:
            res.reason = f"finished {epochs} epochs"
        if best_params is not None:
            res.params = best_params
            res.reason += f"; kept the params of epoch {res.best_epoch} (validation loss {best:.6g})"
        else:
            res.params = self.params
        return res

    def _epoch(self, data, order, epoch, epochs, batch, steps) -> float | None:
        total, seen = 0.0, 0
        for step in range(1, steps + 1):
            idx = order[(step - 1) * batch: step * batch]
            env = dict(self.params)
            env.update({k: v[idx] for k, v in data.items()})
            value, grads = self.plan.backward(env, self.inputs, self.loss, wrt=self.wrt)
            bad = _nonfinite(value, grads)
            if bad:
                if self.last is not None:
                    self.params.update(self.last)
                self._stop(f"stopped at epoch {epoch}, step {step}: {bad}; kept the params at which the last "
                           f"finite loss was computed (try a smaller --lr, or keep the atoms' arguments inside "
                           f"their domains)")
                return None
            self.last = _copy(self.params)
            self._update(grads)
            total += value * len(idx)
            seen += len(idx)
            self.result.steps += 1
            self._tick(Tick(epoch, epochs, step, steps, total / seen))
        return total / seen

    def _update(self, grads: dict) -> None:
        self.opt.step({k: self.params[k] for k in self.net.params}, grads)   # and the projection, in one pass

    def _stop(self, reason: str) -> None:
        self.result.stopped_early = True
        self.result.reason = reason

    def _tick(self, tick: Tick) -> None:
        if self.progress is not None:
            self.progress(tick)


def _nonfinite(value: float, grads: dict) -> str | None:
    if not math.isfinite(value):
        return f"the loss is {value}"
    for name, g in grads.items():
        if not np.isfinite(g).all():
            return f"the gradient of `{name}` holds {g[~np.isfinite(g)].flat[0]}"
    return None


def _copy(params: dict) -> dict:
    return {k: v.copy() for k, v in params.items()}


def mean_loss(net: Network, params: dict[str, np.ndarray], data: dict[str, np.ndarray], loss: str,
              dtype=np.float64, plan=None) -> float:
    """The mean of the scalar `loss` over every example of `data`, computed in chunks.

    >>> from dcpnet.graph import load_text
    >>> net = load_text("input x\\nparam w\\nloss = (w * x)^2\\n")
    >>> mean_loss(net, {"w": np.array(2.0)}, {"x": np.array([1.0, 2.0])}, "loss")
    10.0
    """
    plan = plan or compile_network(net, [loss], dtype)
    n = len(next(iter(data.values())))
    total = 0.0
    for start in range(0, n, CHUNK):
        env = dict(params)
        env.update({k: v[start:start + CHUNK] for k, v in data.items()})
        total += float(np.sum(plan.forward(env, set(data))[loss], dtype=np.float64))
    return total / n


# ----------------------------------------------------------------------------------------------------
# Checking the arguments: every problem is a DcpnetError naming the file
# ----------------------------------------------------------------------------------------------------

def _fail(net: Network, message: str, line: int = 1, col: int = 1, show: bool = False) -> DcpnetError:
    if show:
        return net.source.error(message, line, col)
    return DcpnetError(Diagnostic(message, net.source.file, line, col))


def check_options(net: Network, loss: str, epochs, batch, lr, optimizer, val, patience) -> None:
    if loss not in net.names:
        names = [n for n, i in net.names.items() if net.nodes[i].shape == () and net.variables.get(n) is None]
        raise _fail(net, f"--loss: no output or assignment named `{loss}`{did_you_mean(loss, names)}")
    node = net.node(loss)
    if loss in net.variables:
        raise _fail(net, f"--loss: `{loss}` is a declared {net.variables[loss].kind}, not a computed value",
                    net.variables[loss].line, net.variables[loss].col, True)
    if node.shape != ():
        line, col = _assigned_at(net, loss) or (node.line, node.col)
        raise _fail(net, f"--loss: `{loss}` has shape {list(node.shape)}; the loss must be a scalar (reduce it "
                         f"with sum, mean, ... in the file)", line, col, True)
    used = {net.nodes[i].attrs[0] for i in net.ancestors(node.id) if net.nodes[i].op == "var"}
    if not used & set(net.params):
        raise _fail(net, f"--loss: `{loss}` depends on no param: there is nothing to train")
    for what, value, ok in [("--epochs", epochs, isinstance(epochs, int) and epochs >= 1),
                            ("--batch", batch, isinstance(batch, int) and batch >= 1),
                            ("--lr", lr, isinstance(lr, (int, float)) and 0 < lr < math.inf),
                            ("--optimizer", optimizer, optimizer in OPTIMIZERS),
                            ("--val", val, isinstance(val, (int, float)) and 0 <= val < 1),
                            ("--patience", patience, patience is None or (isinstance(patience, int) and patience >= 1))]:
        if not ok:
            raise _fail(net, f"{what}: {value!r} is not allowed ({_ALLOWED[what]})")
    if patience is not None and not val:
        raise _fail(net, "--patience needs a validation split (--val, e.g. 0.2): early stopping watches the "
                         "validation loss")


_ALLOWED = {"--epochs": "a positive integer", "--batch": "a positive integer", "--lr": "a positive finite number",
            "--optimizer": "adam or sgd", "--val": "a fraction in [0, 1)", "--patience": "a positive integer"}


def _assigned_at(net: Network, name: str) -> tuple[int, int] | None:
    pattern = re.compile(rf"^(\s*){re.escape(name)}\s*=(?!=)")
    for i, text in enumerate(net.source.lines, 1):
        m = pattern.match(text)
        if m:
            return i, len(m.group(1)) + 1
    return None


def _start(net: Network, init: dict | None, rng, dtype) -> dict[str, np.ndarray]:
    missing = [c for c in net.consts if init is None or c not in init]
    if missing:   # a const (e.g. an imported running mean) is never trained: its value must be given
        raise _fail(net, f"the network declares the constant `{missing[0]}`: give its value with --init PARAMS.npz")
    consts = {c: np.array(init[c], dtype=dtype) for c in net.consts}
    return {**_start_params(net, init, rng, dtype), **consts}


def _start_params(net: Network, init: dict | None, rng, dtype) -> dict[str, np.ndarray]:
    if init is None:   # np.array: init_params gives NumPy scalars (not arrays) for scalar params
        params = {k: np.array(v, dtype=dtype) for k, v in init_params(net, rng, dtype).items()}
    else:
        params = {}
        for name in net.params:
            var = net.variables[name]
            value = np.array(init[name], dtype=dtype) if name in init else None
            if value is None or value.shape != var.shape:
                raise _fail(net, f"--init: param `{name}` " + ("is missing" if value is None else
                                 f"has shape {value.shape}; expected {var.shape}"))
            params[name] = value
        bad = violations(net, params) + [f"`{k}` is not finite" for k, v in params.items()
                                         if not np.isfinite(v).all()]
        if bad:
            raise _fail(net, "--init: " + "; ".join(bad))
    project_params(net, params)
    return params


def _split(n: int, val: float, rng, file: str) -> np.ndarray | None:
    """The sorted indices of the examples held out for validation (None without a split)."""
    if not val:
        return None
    n_val = max(1, round(val * n))
    if n_val >= n:
        raise DcpnetError(Diagnostic(f"--val {val:g} of {n} examples leaves none to train on", file, 1, 1))
    return np.sort(rng.permutation(n)[:n_val])


_malloc_tuned = False


def tune_malloc() -> None:
    """glibc: keep freed blocks up to 32 MiB in the heap (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD).

    The large temporaries of each training step are then recycled from the heap instead of being mapped,
    faulted in and unmapped every time (a third of a step otherwise). `DCPNET_MALLOC_TUNE=0` leaves malloc
    alone.
    """
    global _malloc_tuned
    if _malloc_tuned or os.environ.get("DCPNET_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)             # M_MMAP_THRESHOLD: its maximum on 64-bit glibc
        libc.mallopt(-1, 1 << 30)              # M_TRIM_THRESHOLD
        libc.mallopt(-2, 64 << 20)             # M_TOP_PAD
    except (OSError, AttributeError):          # not glibc (musl, ...): nothing to tune
        pass
