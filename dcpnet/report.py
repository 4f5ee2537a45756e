"""Printing what dcpnet found: rich tables and trees for people, JSON for tools (SPEC sections 3 and 4).

This module and cli.py are the only ones that import rich; the console is passed in so tests can compare
exact output at a fixed width.
"""
from __future__ import annotations

import html
import io
import json
import math
import os
import sys
from contextlib import contextmanager

import numpy as np

from .errors import DcpnetError, Diagnostic, write_atomically
from .lattice import Verdict

COLOURS = {"constant": "white", "affine": "cyan", "convex": "green", "concave": "blue", "unknown": "red"}
MARKS = {Verdict.PROVED: "[green]proved[/]", Verdict.REFUTED: "[yellow]refuted[/]", Verdict.UNKNOWN: "[red]unknown[/]"}


def dump_json(reports: list[dict], single: bool = True) -> None:
    """The JSON report of SPEC section 4 on stdout: one object for one file, a list of them for several."""
    # certificates of very deep networks nest deeply; the encoder recurses once per level
    limit = sys.getrecursionlimit()
    depth = max((_depth(r) for report in reports for r in report["results"]), default=0)
    sys.setrecursionlimit(max(limit, 4 * depth + 1000))
    try:
        # indentation grows with depth, so a deep certificate is printed compactly (linear in its size)
        text = json.dumps(reports[0] if single else reports, indent=1 if depth <= 64 else None)
    finally:
        sys.setrecursionlimit(limit)
    sys.stdout.write(text + "\n")


def _depth(result: dict) -> int:
    deepest = 0
    for prop in ("convex", "concave", "affine", "increasing", "decreasing"):
        cert = result.get(prop, {}).get("certificate")
        if cert is None:
            continue
        stack = [(cert, 1)]
        while stack:
            node, d = stack.pop()
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in node["children"])
    return deepest


# -- people ----------------------------------------------------------------------------------------------
def print_results(console, net, results, tree: bool = False) -> None:
    checks = [r for r in results if r.claim is not None]
    table_rows = [r for r in results if r.claim is None]
    for r in checks:
        _print_check(console, r, tree)
    if table_rows:
        _print_table(console, net, table_rows)
        if tree:
            for r in table_rows:
                _print_trees(console, r)
    if checks:
        held = sum(1 for r in checks if r.holds)
        colour = "green" if held == len(checks) else "red"
        console.print(f"[{colour}]{held} of {len(checks)} checks hold[/]")


def _print_check(console, r, tree: bool) -> None:
    prop = r.claim.removeprefix("not ")
    res = r[prop]
    mark = "[green]✓[/]" if r.holds else "[red]✗[/]"
    console.print(f"{mark} line {r.line}: {r.claim}({r.expr}) in {', '.join(r.wrt)}: {MARKS[res.verdict]}"
                  f" (curvature: [{COLOURS[r.curvature.value]}]{r.curvature.value}[/])", highlight=False)
    _print_verdict_body(console, r, res)
    if tree:
        _print_trees(console, r)


def _print_verdict_body(console, r, res) -> None:
    """What backs a verdict: the witness when refuted, the reason when unknown, and the hint for either."""
    if r.conditions:
        _plain(console, f"    where defined: {'; '.join(r.conditions)}")
    if res.verdict is Verdict.REFUTED:
        _print_witness(console, res)
    elif res.verdict is Verdict.UNKNOWN:
        _plain(console, f"    {res.reason}")
    if res.hint and res.verdict is not Verdict.PROVED:
        _plain(console, f"    hint: {res.hint}")


def _plain(console, text: str) -> None:
    console.print(text, highlight=False, markup=False)


def _print_witness(console, res) -> None:
    w = res.witness
    _plain(console, f"    {res.reason}")
    if res.prop in ("increasing", "decreasing"):   # a monotonicity claim: a ≤ b, one coordinate apart
        _print_pair(console, res)
        return
    entry = f" entry {w['index']}" if w.get("index") else ""
    _plain(console, f"    witness{entry}: a = {_short(w['a'])}, b = {_short(w['b'])}"
                    + (f", fixed {_short(w['fixed'])}" if w.get("fixed") else ""))
    _plain(console, "    " + witness_values(w))


def witness_values(w: dict) -> str:
    """The three values and the gap, with enough digits that the gap shows in them, and the gap relative to
    the chord: `f(mid) = 596712.0169 lies above the chord 596712.0000 by 0.0169 (relative 2.8e-08)`."""
    chord = (w["f_a"] + w["f_b"]) / 2
    gap = abs(w["gap"])
    scale = max(abs(w["f_a"]), abs(w["f_b"]), abs(w["f_mid"]), 1e-300)
    digits = 6 if gap == 0 else min(17, max(6, math.ceil(math.log10(scale / gap)) + 3))
    side = "above" if w["f_mid"] > chord else "below"
    rel = gap / max(abs(chord), 1e-300)

    def f(v: float) -> str:
        return f"{v:.{digits}g}"
    return (f"f(a) = {f(w['f_a'])}, f(b) = {f(w['f_b'])}; f((a+b)/2) = {f(w['f_mid'])} lies {side} the chord "
            f"(f(a)+f(b))/2 = {f(chord)} by {gap:.3g} (relative {rel:.2g}; checked with {w['digits']} digits)")


def _print_pair(console, res) -> None:
    w = res.witness
    entry = f" entry {w['index']}" if w.get("index") else ""
    _plain(console, f"    witness{entry}: a = {_short(w['a'])}, b = {_short(w['b'])}"
                    + (f", fixed {_short(w['fixed'])}" if w.get("fixed") else ""))
    sign = ">" if res.prop == "increasing" else "<"
    _plain(console, f"    a ≤ b, yet f(a) = {w['f_a']:.6g} {sign} f(b) = {w['f_b']:.6g}; gap {w['gap']:.3g} "
                    f"(checked with {w['digits']} digits)")


def _short(values: dict, limit: int = 60) -> str:
    """Long vectors shortened for the text (the JSON report keeps them whole)."""
    text = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _print_table(console, net, rows) -> None:
    from rich.table import Table

    columns: list[str] = []
    for r in rows:
        key = _wrt_label(net, r.wrt)
        if key not in columns:
            columns.append(key)
    table = Table(title="curvature of each output", title_justify="left")
    table.add_column("output")
    for c in columns:
        table.add_column(f"in {c}")
    by_output: dict[str, dict[str, str]] = {}
    for r in rows:
        by_output.setdefault(r.expr, {})[_wrt_label(net, r.wrt)] = _cell(r)
    for out, cells in by_output.items():
        table.add_row(out, *(cells.get(c, "") for c in columns))
    console.print(table)
    for r in rows:
        if r.groups is not None:
            groups = "; ".join("{" + ", ".join(g) + "}" for g in r.groups) or "none"
            console.print(f"{r.expr} is not proved convex in all params jointly; convex together in: {groups}",
                          highlight=False)


def _wrt_label(net, wrt: list[str]) -> str:
    if wrt == net.params and len(wrt) > 1:
        return "params"
    if wrt == net.inputs and len(wrt) > 1:
        return "inputs"
    return ", ".join(wrt)


def _cell(r) -> str:
    c = r.curvature.value
    if c != "unknown":
        return f"[{COLOURS[c]}]{c}[/]"
    refuted = [p for p in ("convex", "concave") if r[p].verdict is Verdict.REFUTED]
    if len(refuted) == 2:
        return "[yellow]neither[/]"
    if refuted:
        return f"[yellow]not {refuted[0]}[/]"
    return "[red]unknown[/]"


def _print_trees(console, r) -> None:
    for prop in (*r.monotone, "affine", "convex", "concave"):
        cert = r[prop].certificate
        if cert is not None:
            console.print(f"certificate: {r.expr} is {prop} in {', '.join(r.wrt)}")
            console.print(rich_tree(cert))
            return
    if r.tree is not None:
        console.print(f"partial tree: {r.expr} in {', '.join(r.wrt)} (the rules stopped at the node marked ✗)")
        console.print(rich_tree(r.tree))


def rich_tree(cert: dict, collapse_below: int | None = None):
    """The proof tree as a rich Tree; nodes deeper than `collapse_below` are left out (shown as `…`)."""
    from rich.tree import Tree

    root = Tree(_tree_label(cert))
    stack = [(cert, root, 1)]
    while stack:
        node, branch, depth = stack.pop()
        if node["children"] and collapse_below is not None and depth >= collapse_below:
            branch.add("[dim]…[/]")
            continue
        for child in node["children"]:
            stack.append((child, branch.add(_tree_label(child)), depth + 1))
    return root


def _tree_label(node: dict) -> str:
    from rich.markup import escape

    c = node["curvature"]
    lo, hi = node["range"]
    rng = f"{'(-inf' if lo is None else f'[{lo:.4g}'}, {'inf)' if hi is None else f'{hi:.4g}]'}"
    failed = "[bold red]✗ [/]" if node.get("failed") else ""
    mono = f" {node['monotonicity']}" if "monotonicity" in node else ""   # monotonicity claims
    return f"{failed}[{COLOURS[c]}]{c}[/]{mono} {escape(node['expr'])}  [dim]{escape(rng)} {escape(node['rule'])}[/]"


# -- one Result in a notebook or a REPL ----------------------------------------------------------------
def explain(result, width: int = 100) -> str:
    """The text the CLI prints for a result: each property's verdict with its witness, reason and hint."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False, soft_wrap=True)
    if result.claim is not None:               # a check line: exactly what `dcpnet check` prints for it
        _print_check(console, result, tree=False)
    else:
        for line in _explanation(result):
            console.print(line, highlight=False)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()) + "\n"


def _explanation(result):
    """Renderables, one per line: the curvature, then each property (rich markup in the first line only)."""
    from rich.console import Console
    from rich.text import Text

    yield (f"{result.expr} in {', '.join(result.wrt)}: curvature "
           f"[{COLOURS[result.curvature.value]}]{result.curvature.value}[/]")
    for prop in ("convex", "concave", "affine"):
        res = result[prop]
        yield f"  {prop}: {MARKS[res.verdict]}"
        capture = Console(file=io.StringIO(), width=10_000, no_color=True, soft_wrap=True)
        _print_verdict_body(capture, result, res)
        for line in capture.file.getvalue().splitlines():
            yield Text(line.rstrip())


def rich_result(result):
    """A rich renderable: the verdicts with witness and reason, then the certificate tree, collapsed."""
    from rich.console import Group

    parts = list(_explanation(result))
    cert = next((result[p].certificate for p in ("affine", "convex", "concave") if result[p].certificate), None)
    tree = cert if cert is not None else result.tree
    if tree is not None:
        parts.append(rich_tree(tree, collapse_below=3))
    return Group(*parts)


def html_result(result) -> str:
    """HTML for Jupyter: a table of the three verdicts, the witness, and the certificate tree collapsed."""
    esc = html.escape
    rows = []
    for prop in ("convex", "concave", "affine"):
        res = result[prop]
        detail = witness_values(res.witness) if res.witness else (res.reason or "")
        if res.hint and res.verdict is not Verdict.PROVED:
            detail += f" (hint: {res.hint})"
        rows.append(f"<tr><td>{prop}</td><td><b>{esc(res.verdict.value)}</b></td><td>{esc(detail)}</td></tr>")
    cert = next((result[p].certificate for p in ("affine", "convex", "concave") if result[p].certificate), None)
    tree = cert if cert is not None else result.tree
    tree_html = f"<details><summary>proof tree</summary>{_html_tree(tree)}</details>" if tree else ""
    return (f"<div><p><code>{esc(result.expr)}</code> in {esc(', '.join(result.wrt))}: curvature "
            f"<b>{esc(result.curvature.value)}</b></p><table><tr><th>property</th><th>verdict</th><th>why</th></tr>"
            + "".join(rows) + f"</table>{tree_html}</div>")


def _html_tree(node: dict, depth: int = 0, limit: int = 2000) -> str:
    """Nested lists; subtrees below the first levels start collapsed."""
    out, stack, count = [], [("node", node, depth)], 0
    while stack:
        kind, item, d = stack.pop()
        if kind == "close":
            out.append(item)
            continue
        count += 1
        if count > limit:
            out.append("<li>…</li>")
            continue
        label = html.escape(f"{item['curvature']} {item['expr']}  ({item['rule']})")
        if item.get("failed"):
            label = "✗ " + label
        if not item["children"]:
            out.append(f"<li>{label}</li>")
            continue
        out.append(f"<li><details{' open' if d < 2 else ''}><summary>{label}</summary><ul>")
        stack.append(("close", "</ul></details></li>", d))
        stack.extend(("node", c, d + 1) for c in reversed(item["children"]))
    return "<ul>" + "".join(out) + "</ul>"


@contextmanager
def training_progress():
    """A progress bar on stderr with the running loss (used by `dcpnet train`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[val]}"), TimeElapsedColumn()]
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = None

        def update(tick) -> None:  # a train.Tick
            nonlocal task
            if task is None:
                task = bar.add_task("train", total=tick.epochs * tick.steps, epoch="", loss="", val="")
            val = "" if tick.val is None else f"val {tick.val:.4g}"
            bar.update(task, completed=(tick.epoch - 1) * tick.steps + tick.step,
                       epoch=f"{tick.epoch}/{tick.epochs}", loss=f"{tick.loss:.4g}", val=val)
        yield update


# -- pictures (matplotlib's object API: no global pyplot state) -----------------------------------------
def plot_ready(path: str) -> None:
    """Fail early, before any work, when `path` cannot be drawn: no matplotlib, or an unknown format."""
    figure = _figure_class(path)
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    kinds = figure().canvas.get_supported_filetypes()
    if ext not in kinds:
        raise DcpnetError(Diagnostic(f"--plot: cannot draw a `.{ext}` file (one of: {', '.join(sorted(kinds))})",
                                     path, 1, 1))


def _figure_class(path: str):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise DcpnetError(Diagnostic("--plot needs matplotlib: pip install 'dcpnet[plot]'", path, 1, 1)) from None
    return Figure


def _save(fig, path: str) -> None:
    ext = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    try:
        write_atomically(path, lambda fh: fig.savefig(fh, format=ext, dpi=100), "the picture")
    except ValueError as err:                  # matplotlib: an unknown format
        raise DcpnetError(Diagnostic(f"--plot: cannot write {path}: {err}", path, 1, 1)) from None


def plot_witness(net, target: str, witness: dict, path: str) -> None:
    """Draw the output along the segment from a to b, with the chord and the midpoint."""
    figure = _figure_class(path)
    from .evaluate import compile_network

    node = net.names[target]
    ts = np.linspace(0, 1, 201)
    env = {k: np.repeat(np.asarray(v, dtype=float)[None], len(ts), axis=0) for k, v in witness["fixed"].items()}
    for k in witness["a"]:
        a, b = np.asarray(witness["a"][k], dtype=float), np.asarray(witness["b"][k], dtype=float)
        env[k] = a[None] + np.multiply.outer(ts, b - a)
    out = compile_network(net, [node]).forward(env, batched=set(env))
    y = np.asarray(out[node], dtype=float).reshape(len(ts), -1)
    entry = int(np.ravel_multi_index(witness["index"], net.nodes[node].shape)) if witness["index"] else 0
    fig = figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(ts, y[:, entry], label=f"{target} along a → b")
    ax.plot([0, 1], [witness["f_a"], witness["f_b"]], "--", label="chord")
    ax.plot([0.5], [witness["f_mid"]], "o", label="value at the midpoint")
    ax.set_xlabel("t  (point = a + t (b − a))")
    above = witness["f_mid"] > (witness["f_a"] + witness["f_b"]) / 2
    ax.set_title(f"{target} is not convex: the midpoint value lies above the chord" if above
                 else f"{target} is not concave: the midpoint lies below")
    ax.legend()
    _save(fig, path)


def plot_history(history: dict[str, list[float]], path: str, title: str = "") -> None:
    """Draw the loss curves of `history` into `path` (its extension picks the format)."""
    fig = _figure_class(path)(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for key, style in (("train", "-"), ("val", "--")):
        values = history.get(key) or []
        if values:
            ax.plot(range(1, len(values) + 1), values, style, marker="." if len(values) < 40 else None,
                    label={"train": "train (running mean)", "val": "validation"}[key])
    everything = [v for vs in history.values() for v in vs]
    if everything and min(everything) > 0 and max(everything) > 10 * min(everything):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)
