"""The questions dcpnet answers, as a Python API: is this output convex (concave, affine) in these variables?

Each property gets a verdict: proved (with a certificate from the rules), refuted (with a witness checked in
high precision by the refuter), or unknown (with the lowest node where the rules stopped and a hint).

>>> from dcpnet.graph import load_text
>>> net = load_text("input x\\nh = (x^2 - 1)^2\\n")
>>> r = verify(net, "h", ["x"])
>>> r.convex.verdict, r.convex.witness["gap"] > 0
(<Verdict.REFUTED: 'refuted'>, True)
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

from .certificate import certificate
from .errors import DcpnetError, Diagnostic, did_you_mean
from .graph import Network, load
from .lattice import Curvature, Verdict
from .prove import BEYOND, PROPERTIES, Analyzer, Failure, holds


class _BuiltOnRead:
    """A dataclass field that may be given a builder (a function of no arguments) instead of its value: the
    value is built when first read. A proof tree is needed only for --tree and --json, and building it costs
    more than the proof on a deep network."""

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return None                      # the field's default
        value = obj.__dict__.get(self.slot)
        if callable(value):
            value = obj.__dict__[self.slot] = value()
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value


@dataclass(repr=False)
class PropertyResult:
    """The verdict on one property (convex, concave or affine) with what justifies it."""

    prop: str
    verdict: Verdict
    certificate: dict | None = _BuiltOnRead()     # a dict, or a function that builds it when first read
    witness: dict | None = None
    reason: str | None = None
    hint: str | None = None
    failure: Failure | None = None

    def __repr__(self) -> str:
        why = f": {self.reason}" if self.reason and self.verdict is not Verdict.PROVED else ""
        return f"<{self.prop} {self.verdict.value}{why[:80] + ('…' if len(why) > 80 else '')}>"

    def as_json(self) -> dict:
        out: dict = {"verdict": self.verdict.value}
        if self.certificate is not None:
            out["certificate"] = self.certificate
        if self.witness is not None:
            out["witness"] = self.witness
        if self.verdict is not Verdict.PROVED:
            out["reason"] = self.reason
            out["hint"] = self.hint
        return out


@dataclass(repr=False)
class Result:
    """Everything dcpnet says about one expression in one set of variables."""

    expr: str
    wrt: list[str]
    curvature: Curvature
    convex: PropertyResult
    concave: PropertyResult
    affine: PropertyResult
    line: int | None = None
    claim: str | None = None          # e.g. "convex", "not convex"; None when no check line asked
    groups: list[list[str]] | None = field(default=None)   # maximal variable groups proved convex together
    conditions: list[str] = field(default_factory=list)    # implicit domains the verdicts are read on
    tree: dict | None = field(default=None, repr=False)     # the partial tree where nothing was proved (if asked)

    def __repr__(self) -> str:
        verdicts = ", ".join(f"{p} {self[p].verdict.value}" for p in PROPERTIES)
        return f"<Result {self.expr} in {', '.join(self.wrt)}: {self.curvature.value} ({verdicts})>"

    def explain(self) -> str:
        """The text the command line prints for this result: verdicts, witnesses, reasons and hints."""
        from .report import explain

        return explain(self)

    def __rich__(self):
        from .report import rich_result

        return rich_result(self)

    def _repr_html_(self) -> str:
        from .report import html_result

        return html_result(self)
    monotone: dict[str, PropertyResult] = field(default_factory=dict)   # "increasing"/"decreasing" claims

    @property
    def holds(self) -> bool | None:
        if self.claim is None:
            return None
        negated = self.claim.startswith("not ")
        verdict = self[self.claim.removeprefix("not ")].verdict
        return verdict is (Verdict.REFUTED if negated else Verdict.PROVED)

    def __getitem__(self, prop: str) -> PropertyResult:
        if prop in self.monotone:
            return self.monotone[prop]
        return {"convex": self.convex, "concave": self.concave, "affine": self.affine}[prop]

    def as_json(self) -> dict:
        out = {"expr": self.expr, "wrt": self.wrt, "line": self.line, "claim": self.claim, "holds": self.holds,
               "curvature": self.curvature.value}
        for prop in PROPERTIES:
            out[prop] = self[prop].as_json()
        if self.groups is not None:
            out["convex_groups"] = self.groups
        if self.conditions:
            out["conditions"] = self.conditions
        for prop, res in self.monotone.items():
            out[prop] = res.as_json()
        return out


class Verifier:
    """Answers questions about one network; ranges and rule passes are shared between questions."""

    def __init__(self, net: Network, seed: int = 0, budget: float = 3.0, refute: bool = True, trees: bool = False,
                 beyond: tuple[str, ...] = BEYOND):
        self.net = net
        self.trees = trees                 # a partial tree (failing node marked) for what is not proved
        self.analyzer = Analyzer(net, beyond=beyond)   # beyond=(): the composition rules alone (CVXPY's)
        self.seed = seed
        self.budget = budget
        self.refute = refute
        self._refuter = None

    def verify(self, target: str, wrt, claim: str | None = None, line: int | None = None,
               want: tuple[str, ...] = PROPERTIES) -> Result:
        """The three verdicts on `target` in the variables `wrt` (names, `inputs` or `params`)."""
        target = check_target(self.net, target)
        wrt = self.net.resolve_wrt(parse_wrt(self.net, wrt))
        curv = self.analyzer.curvature(target, wrt)
        # one tree serves every property proved, built when first read
        cert = functools.cache(functools.partial(certificate, self.analyzer, target, wrt)) \
            if curv is not Curvature.UNKNOWN else None
        props = {p: self._prove(target, wrt, p, curv, cert) for p in PROPERTIES}
        if self.refute:
            self._refute_unproved(target, wrt, props, want)
        tree = None
        if self.trees and cert is None:
            failure = next((props[p].failure for p in ("convex", "concave") if props[p].failure), None)
            tree = certificate(self.analyzer, target, wrt, mark=failure.node if failure else None)
        return Result(target, wrt, curv, props["convex"], props["concave"], props["affine"], line, claim,
                      conditions=self.analyzer.conditions(target), tree=tree)

    def verify_monotone(self, target: str, wrt, claim: str, line: int | None = None) -> Result:
        """A monotonicity claim ("increasing"/"decreasing", maybe negated); curvature is reported, not refuted."""
        from .monotone import lowest_loss, proves, search

        result = self.verify(target, wrt, claim, line, want=())
        prop = claim.removeprefix("not ")
        mono = self.analyzer.monotonicity(target, result.wrt)
        root = self.net.names[target]
        if proves(mono, prop):
            cert = certificate(self.analyzer, target, result.wrt, monotone=True)
            result.monotone[prop] = PropertyResult(prop, Verdict.PROVED, certificate=cert)
            return result
        node = self.net.nodes[lowest_loss(self.analyzer, root, result.wrt)]
        reason = (f"the analysis finds `{target}` {mono} in {', '.join(result.wrt)}; monotonicity is lost at "
                  f"`{node.label}` (line {node.line})")
        res = PropertyResult(prop, Verdict.UNKNOWN, reason=reason,
                             hint="declare sign constraints on the variables, or let the refuter look for a pair")
        if self.refute:
            witness = search(self.refuter(), root, result.wrt, prop, time.perf_counter() + self.budget, self.seed)
            if witness is not None:
                res.verdict, res.witness, res.hint = Verdict.REFUTED, witness, None
                m = witness["moved"]
                at = m["name"] + (str(m["index"]) if m["index"] else "")
                res.reason = (f"not {prop}: raising {at} from a to b changes {target} from {witness['f_a']:.6g} to "
                              f"{witness['f_b']:.6g}")
        result.monotone[prop] = res
        return result

    def _prove(self, target: str, wrt: list[str], prop: str, curv: Curvature, cert: dict | None) -> PropertyResult:
        if holds(curv, prop):  # one proof tree serves every property the curvature class gives
            return PropertyResult(prop, Verdict.PROVED, certificate=cert)
        failure = self.analyzer.why_not(target, prop, wrt)
        node = self.net.nodes[failure.node]
        reason = f"at `{node.label}` (line {node.line}): {failure.rule} failed: {failure.reason}"
        return PropertyResult(prop, Verdict.UNKNOWN, reason=reason, hint=failure.hint, failure=failure)

    def _refute_unproved(self, target, wrt, props: dict[str, PropertyResult], want) -> None:
        for prop in ("convex", "concave"):
            res = props[prop]
            if res.verdict is Verdict.PROVED:
                continue
            if prop not in want and "affine" not in want:
                continue
            self.search(target, wrt, res, time.perf_counter() + self.budget)  # each property has its own budget
        settle_affine(props)

    def search(self, target: str, wrt: list[str], res: PropertyResult, deadline: float) -> bool:
        """Look for a witness against the unproved property `res` until `deadline`; True when refuted."""
        witness = self.refuter().search(target, wrt, res.prop, res.failure, deadline)
        if witness is not None:
            self.refuted(target, wrt, res, witness)
        return witness is not None

    def refuted(self, target: str, wrt: list[str], res: PropertyResult, witness: dict) -> None:
        """Record a verified witness against `res` (the refuter's, or one found in fewer variables)."""
        res.verdict, res.witness = Verdict.REFUTED, witness
        res.reason = self.refuter().explain(target, wrt, res.prop, res.failure, witness) or res.reason

    def refuter(self):
        """The witness search, made on first use (it brings the evaluator; a proof alone never needs it)."""
        if self._refuter is None:
            from .refute import Refuter

            self._refuter = Refuter(self.net, self.analyzer, seed=self.seed)
        return self._refuter

    def convex_groups(self, target: str, exhaustive_up_to: int = 10) -> list[list[str]]:
        """Maximal sets of params in which `target` is proved convex together (its multi-convex structure).

        A proof in a set of variables is also one in any subset (fixing more variables only turns factors
        into constants), so the proved sets are closed under subsets: every subset is tried for a few params,
        and for more each param seeds a group grown greedily, in declaration order.
        """
        params = self.net.params

        def convex(group) -> bool:
            return holds(self.analyzer.curvature_once(target, group), "convex")

        found: list[frozenset] = []
        if len(params) <= exhaustive_up_to:
            for mask in sorted(range(1, 1 << len(params)), key=lambda m: -m.bit_count()):
                group = frozenset(p for i, p in enumerate(params) if mask >> i & 1)
                if not any(group <= g for g in found) and convex(group):
                    found.append(group)
        else:
            for seed in params:
                if any(seed in g for g in found) or not convex([seed]):
                    continue
                group = [seed]
                for p in params:
                    if p not in group and convex(group + [p]):
                        group.append(p)
                found.append(frozenset(group))
        return [[p for p in params if p in g] for g in found]


def verify(net: Network, target: str, wrt, seed: int = 0, budget: float = 3.0, params: dict | None = None) -> Result:
    """One question, one answer: the three verdicts on `target` in `wrt`.

    `wrt` is a list of names or one string, a name or a comma list as on the command line (`"x"`,
    `"W1,W2"`, `"params"`). An unknown name raises `DcpnetError`, as the command line reports it.
    With `params` (name -> array), every param is fixed to those values (`dcpnet.fixed.fix_params`): the
    answer is about that trained network, and `wrt` may then name only inputs.
    """
    if params is not None:
        from .fixed import fix_params

        net = fix_params(net, params)
        parse_wrt(net, wrt)
    return Verifier(net, seed=seed, budget=budget).verify(target, wrt)


def check_file(path: str, wrt=None, seed: int = 0, budget: float = 3.0) -> list[Result]:
    """What `dcpnet check FILE` computes: results for every check line, then the analysed outputs."""
    return check_network(load(path), wrt, seed=seed, budget=budget)


def check_network(net: Network, wrt=None, seed: int = 0, budget: float = 3.0, trees: bool = False) -> list[Result]:
    """Results for every check line of `net`, then each output in `wrt` (or the default table); with `trees`,
    what is not proved carries its partial tree."""
    wrt = parse_wrt(net, wrt, "--wrt") if wrt else None
    return run_checks(Verifier(net, seed=seed, budget=budget, trees=trees), wrt)


def parse_wrt(net: Network, wrt, what: str = "wrt") -> list[str]:
    """The variable names of `wrt` (a list, or a comma-separated string), each a variable, `inputs` or
    `params`; anything else is bad input, reported against the network's file."""
    names = [n.strip() for n in wrt.split(",")] if isinstance(wrt, str) else list(wrt)
    names = [n for n in names if not isinstance(n, str) or n]
    choices = [*net.variables, "inputs", "params"]
    for n in names:
        if isinstance(n, str) and (n in net.consts or n == "params" and net.fixed and not net.params):
            why = "is fixed by --params" if n in net.fixed or n == "params" else "is a constant"
            raise DcpnetError(Diagnostic(f"{what}: `{n}` {why}; analyse in the inputs instead", net.source.file, 1, 1))
        if not isinstance(n, str) or n not in choices:
            shown = f"`{n}`" if isinstance(n, str) else repr(n)
            hint = did_you_mean(n, choices) if isinstance(n, str) else ""
            raise DcpnetError(Diagnostic(f"{what}: unknown variable {shown}{hint}", net.source.file, 1, 1))
    if not names:
        raise DcpnetError(Diagnostic(f"{what}: no variable named", net.source.file, 1, 1))
    return names


def check_target(net: Network, target) -> str:
    """`target` if it names an expression of the network (an assignment, input or param), else bad input."""
    if isinstance(target, str) and target in net.names:
        return target
    shown = f"`{target}`" if isinstance(target, str) else repr(target)
    hint = did_you_mean(target, list(net.names)) if isinstance(target, str) else ""
    raise DcpnetError(Diagnostic(f"no expression named {shown}{hint}", net.source.file, 1, 1))


def run_checks(verifier: Verifier, wrt: list[str] | None) -> list[Result]:
    net = verifier.net
    results = []
    for c in net.checks:
        claim = ("not " if c.negated else "") + c.prop
        if c.prop in ("increasing", "decreasing"):
            results.append(verifier.verify_monotone(c.target, [n for n, _ in c.wrt], claim, c.pos.line))
            continue
        results.append(verifier.verify(c.target, [n for n, _ in c.wrt], claim, c.pos.line, want=(c.prop,)))
    if wrt:
        for out in net.outputs:
            results.append(verifier.verify(out, wrt))
    elif not net.checks:
        results.extend(default_table(verifier, *net.outputs))
    return results


def settle_affine(props) -> None:
    """Not convex or not concave means not affine, with the same witness."""
    affine = props["affine"]
    if affine.verdict is Verdict.PROVED:
        return
    broken = next((props[p] for p in ("convex", "concave") if props[p].verdict is Verdict.REFUTED), None)
    if broken is not None:
        affine.verdict, affine.witness = Verdict.REFUTED, broken.witness
        why = broken.reason.removeprefix(f"not {broken.prop}: ")
        affine.reason = f"not affine, since not {broken.prop}: {why}"


def default_table(verifier: Verifier, *outputs: str) -> list[Result]:
    """Each output in `inputs`, in `params` jointly, and in each param alone: the seed's question.

    The table shows a proved curvature, or for an unproved cell which of convex and concave are refuted, so
    only unproved cells are searched, within one budget shared by the whole table (`Verifier.budget`
    seconds), smallest variable sets first: a witness in fewer variables is one in every larger set that
    contains them (the extra variables hold their values), so it answers those cells without a search.
    """
    net = verifier.net
    sets = ([["inputs"]] if net.inputs else []) + ([["params"]] if net.params else [])
    sets += [[p] for p in net.params] if len(net.params) > 1 else []
    results = [verifier.verify(out, s, want=()) for out in outputs for s in sets]   # the rules alone: no search
    if verifier.refute:
        search_table(verifier, results, time.perf_counter() + verifier.budget)
    for joint in results:
        if joint.wrt == net.params and joint.convex.verdict is not Verdict.PROVED and len(net.params) > 1:
            joint.groups = verifier.convex_groups(joint.expr)
    return results


def search_table(verifier: Verifier, results: list[Result], deadline: float) -> None:
    """Refute what the table shows of the unproved cells; each search takes a fair share of the time left."""
    todo = sorted(((r, p) for r in results if r.curvature is Curvature.UNKNOWN for p in ("convex", "concave")),
                  key=lambda item: len(item[0].wrt))
    found: list[tuple[Result, str]] = []
    for k, (r, prop) in enumerate(todo):
        res = r[prop]
        if res.verdict is not Verdict.UNKNOWN:
            continue
        smaller = next((s for s, p in found if p == prop and s.expr == r.expr and set(s.wrt) <= set(r.wrt)), None)
        if smaller is not None:
            verifier.refuted(r.expr, r.wrt, res, smaller[prop].witness)
        else:
            now = time.perf_counter()
            share = max(deadline - now, 0.0) / (len(todo) - k)
            verifier.search(r.expr, r.wrt, res, now + share)
        if res.verdict is Verdict.REFUTED:
            found.append((r, prop))
    for r in results:
        settle_affine(r)
