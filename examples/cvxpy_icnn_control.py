"""A learned convex cost, minimised exactly under constraints: train in PyTorch, certify, solve with CVXPY.

    python examples/cvxpy_icnn_control.py

1. `icnn_control.net` is a cost c(u; s) of an action u given a state s, convex in u by construction.
2. `dcpnet.to_torch` makes it a torch module; it is fitted to samples of a hidden cost with Adam, the
   projection `module.project_` running after every step, so its nonnegative weights stay nonnegative.
3. The trained params are saved and the certificate re-proved for them (`dcpnet check --params`).
4. `dcpnet.to_cvxpy` turns the cost, for one state, into a CVXPY expression of u. Under the actuator box
   and a budget u0 + u1 >= 0.5 the solver's optimum is the global one, which gradient descent on the module
   cannot promise; the module's own value at the solution is printed next to it.
   The state reaches the cost through tanh, which CVXPY has no atom for, so it cannot be a
   `cvxpy.Parameter` (the export says so): each state gets its own problem. A network where the state enters
   only through products with numbers (z = softplus(W @ u + S @ s + b)) takes s as a Parameter, and the
   problem is then DPP: compiled once, re-solved fast for each state.
"""
from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))          # run from a checkout

import cvxpy as cp
import numpy as np
import torch

import dcpnet
from dcpnet.lattice import Verdict
from dcpnet.train.params import violations

TARGET = np.array([[0.8, -0.3, 0.5], [-0.4, 0.9, 0.2]])


def hidden_cost(u: np.ndarray, s: np.ndarray) -> np.ndarray:
    """What the network learns: a tracking error to a state-dependent target, and an effort term."""
    goal = np.tanh(s @ TARGET.T)
    return ((u - goal) ** 2).sum(1) + 0.5 * np.log1p(np.exp(u.sum(1) - 1.0))


def train(net, steps: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    u = rng.uniform(-2, 2, size=(2048, 2))
    s = rng.normal(size=(2048, 3))
    data = [torch.tensor(v) for v in (u, s, hidden_cost(u, s))]
    module = dcpnet.to_torch(net)                  # float64, initialised as `dcpnet train` would
    opt = torch.optim.Adam(module.parameters(), lr=0.01)
    opt.register_step_post_hook(module.project_)   # the constraints hold exactly after every step
    for step in range(steps):
        batch = torch.from_numpy(rng.integers(0, len(u), 256))
        opt.zero_grad()
        _, loss = module(*(v[batch] for v in data))
        loss.mean().backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            with torch.no_grad():
                print(f"  step {step:4d}: mean squared error {module(*data)[1].mean().item():.4f}")
    return module


def certify(net, path: str) -> None:
    params = dcpnet.load_params(net, path)
    bad = violations(net, params)
    # what `dcpnet check icnn_control.net --params params.npz` says: the claim for these very weights
    result = dcpnet.verify(net, "cost", ["u"], params=params)
    print(f"  constraints hold exactly: {not bad}; cost convex in u with the trained weights: "
          f"{result.convex.verdict.value}")
    assert not bad and result.convex.verdict is Verdict.PROVED


def main() -> None:
    torch.manual_seed(0)
    net = dcpnet.load(os.path.join(HERE, "icnn_control.net"))
    print("training the cost model in PyTorch")
    module = train(net)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "params.npz")
        dcpnet.save_params(module, path)
        certify(net, path)
        params = dcpnet.load_params(net, path)

    try:
        dcpnet.to_cvxpy(net, "cost", params, fixed={"s": cp.Parameter(3, name="s")})
    except dcpnet.DcpnetError as err:
        print(f"the state as a cvxpy.Parameter: {str(err).split('error: ')[-1]}")
    print("minimising the learned cost over the action, for three states:")
    for s in ([0.0, 0.0, 0.0], [1.0, -0.5, 0.3], [-1.5, 1.0, 2.0]):
        cost, variables, constraints = dcpnet.to_cvxpy(net, "cost", params, fixed={"s": np.array(s)})
        u = variables["u"]
        problem = cp.Problem(cp.Minimize(cost), constraints + [u[0] + u[1] >= 0.5])
        assert problem.is_dcp()
        optimum = problem.solve(solver="CLARABEL")
        with torch.no_grad():
            batch = (torch.tensor(np.array([u.value])), torch.tensor(np.array([s])), torch.zeros(1, dtype=torch.float64))
            at_argmin = module(*batch)[0].item()
        print(f"  s = {s}: u* = {np.round(u.value, 4).tolist()}, cost {optimum:.6f} (module at u*: {at_argmin:.6f}, "
              f"hidden cost {hidden_cost(u.value[None], np.array([s]))[0]:.4f})")


if __name__ == "__main__":
    main()
