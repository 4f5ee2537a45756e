"""The certificate after training: the file's check lines re-verified for the trained params."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import Network


def pinned(net: Network, params: dict[str, np.ndarray], free=()) -> Network:
    """The network with each param (but those in `free`) fixed to its trained values (`dcpnet.fixed`, the
    mechanism of `check --params`): its range is the hull [min, max] of its entries, so a proof for the
    pinned network holds for the trained weights.
    """
    from ..fixed import fix_params

    return fix_params(net, params, "<trained params>", free=free, checks=False)


@dataclass
class Recheck:
    """A check line of the file, verified as declared and with the trained params pinned."""

    text: str
    holds: bool                                  # the file's verdict, under the declared constraints
    declared: str                                # its verdict on the claimed property
    pinned: str | None                           # proved / unknown with the params pinned (positive claims)


def recheck(net: Network, params: dict[str, np.ndarray], seed: int = 0, budget: float = 3.0) -> list[Recheck]:
    """Re-run the file's check lines for the trained params.

    Under the declared constraints the verdicts do not depend on the weights, and the trained weights satisfy
    every constraint exactly, so a proved claim covers them. A positive claim is then also proved again with
    the params not analysed pinned to their trained values (`pinned`). A refuted "not" claim is about the
    family of networks: its witness may choose other weights.
    """
    from ..verify import Verifier

    verifier = Verifier(net, seed=seed, budget=budget)
    out = []
    for c in net.checks:
        wrt = net.resolve_wrt([n for n, _ in c.wrt])
        claim = ("not " if c.negated else "") + c.prop
        res = verifier.verify(c.target, wrt, claim, c.pos.line, want=(c.prop,))
        again = None
        if not c.negated:
            strict = Verifier(pinned(net, params, free=wrt), refute=False)
            again = strict.verify(c.target, wrt, claim, c.pos.line, want=(c.prop,))[c.prop].verdict.value
        out.append(Recheck(f"line {c.pos.line}: {claim}({c.target}) in {', '.join(wrt)}", bool(res.holds),
                           res[c.prop].verdict.value, again))
    return out
