"""One training step of the exported PyTorch module against dcpnet's own trainer, in examples per second.

    python benchmarks/export_train_step.py [--act softplus|relu] [--dtype float64|float32|both] [--seconds 1.0]
                                           [--rounds 2] [--single-core]

The ICNNs and sizes are those of `benchmarks/train_step.py`. The exported step is what a PyTorch user runs:
`dcpnet.to_torch(net)`, `torch.optim.Adam`, the loss's batch mean, backward, step, and the projection as
`optimizer.register_step_post_hook(module.project_)` (exact in the dtype). dcpnet's step is `dcpnet train`'s:
the compiled evaluator's backward and its Adam, which clips onto the
bounds in the same pass. The last column is `train_step.py`'s hand-written torch ICNN (a clamp after
each step), the export's overhead if any. Torch runs in a child process per measurement (its spinning OpenMP threads would
starve NumPy's BLAS in a shared process); rounds alternate and the best of each is kept. `--single-core`
(read by train_step at import) runs everything on one thread, timed in CPU time: the figure to trust on a
machine that other jobs share.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np
import train_step as base  # its sizes, networks, timer and dcpnet step

_WORKER_FLAG = "--torch-worker"


def exported_step(net, params, x, y, dtype):
    """A step of the module `to_torch` builds: Adam, then project_ as a step post-hook."""
    import torch

    import dcpnet

    torch.set_num_threads(1 if base.SINGLE_CORE else 2)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    module = dcpnet.to_torch(net, params, dtype=tdt)
    tx, ty = torch.tensor(x, dtype=tdt), torch.tensor(y, dtype=tdt)
    opt = torch.optim.Adam(module.parameters(), lr=base.LR, betas=(base.BETA1, base.BETA2), eps=base.EPS)
    opt.register_step_post_hook(module.project_)

    def step():
        opt.zero_grad(set_to_none=True)
        module(tx, ty).mean().backward()
        opt.step()
    return step


def torch_worker(spec: str) -> None:
    d, w, depth, batch, act, dtype, seconds = spec.split(",")
    dtype = np.dtype(dtype).type
    net, params, x, y = base.problem(int(d), int(w), int(depth), int(batch), act, dtype)
    exported = base.time_steps(exported_step(net, params, x, y, dtype), float(seconds))
    by_hand = base.time_steps(base.torch_step(params, x, y, int(depth), act, dtype), float(seconds))
    print(exported, by_hand)


def torch_seconds(d, w, depth, batch, act, dtype, seconds) -> tuple[float, float] | None:
    """(seconds per step of the exported module, of train_step's hand-written torch ICNN), in a child."""
    cmd = [sys.executable, os.path.abspath(__file__), _WORKER_FLAG,
           ",".join(map(str, (d, w, depth, batch, act, np.dtype(dtype).name, seconds)))]
    cmd += ["--single-core"] if base.SINGLE_CORE else []
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE" if base.SINGLE_CORE else "ACTIVE"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return None
    exported, by_hand = done.stdout.split()[-2:]
    return float(exported), float(by_hand)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--act", choices=["softplus", "relu"], default="softplus")
    ap.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved measurements of each, best kept")
    ap.add_argument("--single-core", action="store_true", help="one thread everywhere, timed in CPU time")
    ap.add_argument(_WORKER_FLAG, dest="worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return torch_worker(args.worker)
    dtypes = [np.float64, np.float32] if args.dtype == "both" else [np.dtype(args.dtype).type]
    print(f"{'act':8} {'dtype':7} {'d':>4} {'width':>5} {'depth':>5} {'batch':>5} | {'dcpnet train ex/s':>17} "
          f"{'exported torch ex/s':>19} {'torch/dcpnet':>12} | {'hand-written torch ex/s':>23}")
    for dtype in dtypes:
        for d, w, depth, batch in base.SIZES:
            t_torch = t_ours = t_hand = math.inf
            for _ in range(args.rounds):
                measured = torch_seconds(d, w, depth, batch, args.act, dtype, args.seconds)
                if measured:
                    t_torch, t_hand = min(t_torch, measured[0]), min(t_hand, measured[1])
                net, params, x, y = base.problem(d, w, depth, batch, args.act, dtype)
                t_ours = min(t_ours, base.time_steps(base.dcpnet_step(net, params, x, y, dtype), args.seconds))
            theirs = f"{batch / t_torch:19.0f}" if t_torch < math.inf else f"{'-':>19}"
            ratio = f"{t_ours / t_torch:12.2f}" if t_torch < math.inf else f"{'-':>12}"
            hand = f"{batch / t_hand:23.0f}" if t_hand < math.inf else f"{'-':>23}"
            print(f"{args.act:8} {np.dtype(dtype).name:7} {d:4} {w:5} {depth:5} {batch:5} | {batch / t_ours:17.0f} "
                  f"{theirs} {ratio} | {hand}", flush=True)


if __name__ == "__main__":
    main()
