"""PyTorch modules written the way the projects of issue 15 write them, shared by the import tests."""
import numpy as np
import torch

from dcpnet.evaluate import compile_network

nn = torch.nn
F = torch.nn.functional
B = 5


# -- modules written the way the projects write them ----------------------------------------------------
class SoftplusICNN(nn.Module):
    """OT-ICNN / CP-Flow style: hidden weights softplus-reparametrised, input passthrough at every layer."""

    def __init__(self, d=2, h=6):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.hidden = nn.ModuleList([nn.Linear(h, h, bias=False) for _ in range(2)])
        self.skip = nn.ModuleList([nn.Linear(d, h) for _ in range(2)])
        self.head = nn.Linear(h, 1, bias=False)

    def forward(self, x):
        z = F.softplus(self.inp(x))
        for wz, wx in zip(self.hidden, self.skip):
            z = F.softplus(F.linear(z, F.softplus(wz.weight)) + wx(x), beta=2.0)
        return F.linear(z, F.softplus(self.head.weight)) + 0.5 * (x ** 2).sum(dim=1, keepdim=True)


class ClampedICNN(nn.Module):
    """Makkuva-style: raw weights used as they are; training clamps them to >= 0 after each step."""

    def __init__(self, d=2, h=6):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.wz = nn.Linear(h, h, bias=False)
        self.wx = nn.Linear(d, h)
        self.out = nn.Linear(h, 1, bias=False)

    def forward(self, x):
        z = F.leaky_relu(self.inp(x), 0.2)
        z = F.celu(self.wz(z) + self.wx(x))
        return self.out(z)

    def clamp_(self):
        with torch.no_grad():
            for lin in (self.wz, self.out):
                lin.weight.clamp_(min=0)
        return self


class PICNN(nn.Module):
    """Partially input-convex (Amos et al.): convex in y, arbitrary in x."""

    def __init__(self, dx=2, dy=2, h=5):
        super().__init__()
        self.u1 = nn.Linear(dx, h)
        self.zy = nn.Linear(dy, h)
        self.zu = nn.Linear(dx, h)
        self.yu = nn.Linear(dx, dy)
        self.zz = nn.Parameter(torch.rand(1, h))
        self.head = nn.Linear(h, 1)

    def forward(self, x, y):
        u = torch.tanh(self.u1(x))
        z = F.relu(self.zy(y * self.yu(x)) + self.zu(x))
        gate = F.relu(self.head(u))
        return (z * gate) @ torch.exp(self.zz).t() + (u ** 2).sum(dim=1, keepdim=True)


class TanhMLP(nn.Module):
    def __init__(self, d=2, h=8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, 1))

    def forward(self, x):
        return self.net(x)


class LogSumExp(nn.Module):
    def __init__(self, d=3, k=4):
        super().__init__()
        self.lin = nn.Linear(d, k)

    def forward(self, x):
        return torch.logsumexp(self.lin(x), dim=1)


class MaxAffine(nn.Module):
    def __init__(self, d=3, k=5):
        super().__init__()
        self.pieces = nn.Linear(d, k)

    def forward(self, x):
        return self.pieces(x).amax(dim=-1), torch.max(self.pieces(x), dim=1).values


class NormBlock(nn.Module):
    """Linear, eval-mode batch norm, dropout, softplus: convex in x for any batch-norm statistics."""

    def __init__(self, d=3, h=4):
        super().__init__()
        self.lin = nn.Linear(d, h)
        self.bn = nn.BatchNorm1d(h)
        self.drop = nn.Dropout(0.3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(-1, 1)

    def forward(self, x):
        return F.softplus(self.drop(self.bn(self.lin(x)))).sum(dim=1)


class CatSlice(nn.Module):
    """Concatenation and slices along the feature axis: convex in x for every weight."""

    def __init__(self, d=3, h=4):
        super().__init__()
        self.a = nn.Linear(d, h)
        self.b = nn.Linear(d, 2)

    def forward(self, x):
        z = F.softplus(torch.cat([self.a(x), self.b(x)], dim=1))
        return z[:, 1:].sum(dim=1) + torch.logsumexp(torch.cat([x, z[:, :1]], dim=-1), dim=1) + z[:, -1]


class RandomNet(torch.nn.Module):
    """Linear(3, 4), then the named layers of `layer_table`, then the named reduction of `head_table`."""

    def __init__(self, layers, head, layer_table, head_table):
        super().__init__()
        self.first = torch.nn.Linear(3, 4)
        self.body = torch.nn.Sequential(*(layer_table[name]() for name in layers))
        self.reduce = head_table[head]

    def forward(self, x):
        return self.reduce(self.body(self.first(x)))


def seeded(cls, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**kw)


def example(*dims):
    return tuple(torch.randn(B, d) for d in dims)


# -- helpers ------------------------------------------------------------------------------------------------
def run_net(net, params, inputs: dict) -> dict:
    env = {**params, **inputs}
    return compile_network(net, net.outputs).forward(env, set(inputs))


def run_module(module, inputs: dict, names) -> list[np.ndarray]:
    m = module.double().eval()
    with torch.no_grad():
        out = m(*(torch.tensor(np.asarray(inputs[n], dtype=np.float64)) for n in names))
    outs = out if isinstance(out, tuple) else (out,)
    return [o.numpy().reshape(len(inputs[names[0]]), -1) for o in outs]


def assert_same_outputs(module, net, params, rng, n=7):
    inputs = {name: rng.standard_normal((n, *net.variables[name].shape)) for name in net.inputs}
    mine = run_net(net, params, inputs)
    theirs = run_module(module, inputs, net.inputs)
    for name, ref in zip(net.outputs, theirs):
        # ONNX keeps an activation's constants (selu's alpha and scale, ...) as float32 attributes: each entry is
        # off by a float32 rounding relative to the outputs' scale, which a cancellation can make large relative
        # to that entry alone
        scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
        np.testing.assert_allclose(mine[name].reshape(n, -1), ref, rtol=1e-6, atol=1e-6 * scale)


def confirm_with_module(module, net, witness, prop, output=0):
    """The witness's Jensen gap, recomputed with the torch module in float64, at the same entry."""
    points = []
    for at in ("a", "b"):
        points.append({**witness["fixed"], **witness[at]})
    mid = {k: (np.asarray(points[0][k]) + np.asarray(points[1][k])) / 2 for k in witness["a"]}
    points.append({**witness["fixed"], **mid})
    values = []
    for p in points:
        batch = {n: np.asarray(p[n], dtype=np.float64)[None] for n in net.inputs}
        values.append(run_module(module, batch, net.inputs)[output].reshape(-1))
    entry = int(np.ravel_multi_index(witness["index"], net.node(net.outputs[output]).shape)) \
        if witness["index"] else 0
    fa, fb, fm = (v[entry] for v in values)
    sign = 1.0 if prop == "convex" else -1.0
    return sign * (fm - (fa + fb) / 2)
