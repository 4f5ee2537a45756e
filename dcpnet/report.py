"""Printing what dcpnet found: rich tables and trees for people, JSON for tools (SPEC sections 3 and 4).

This module and cli.py are the only ones that import rich; the console is passed in so tests can compare
exact output at a fixed width.
"""
from __future__ import annotations

import json
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
    for prop in ("convex", "concave", "affine"):
        cert = result[prop].get("certificate")
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
    if r.conditions:
        console.print(f"    where defined: {'; '.join(r.conditions)}", highlight=False, markup=False)
    if res.verdict is Verdict.REFUTED:
        _print_witness(console, res)
    elif res.verdict is Verdict.UNKNOWN:
        console.print(f"    {res.reason}", highlight=False, markup=False)
        if res.hint:
            console.print(f"    hint: {res.hint}", highlight=False, markup=False)
    if tree:
        _print_trees(console, r)


def _print_witness(console, res) -> None:
    w = res.witness
    console.print(f"    {res.reason}", highlight=False, markup=False)
    entry = f" entry {w['index']}" if w.get("index") else ""
    console.print(f"    witness{entry}: a = {_short(w['a'])}, b = {_short(w['b'])}"
                  + (f", fixed {_short(w['fixed'])}" if w.get("fixed") else ""), highlight=False, markup=False)
    sign = ">" if res.prop == "convex" else "<"
    console.print(f"    f(a) = {w['f_a']:.6g}, f(b) = {w['f_b']:.6g}, f((a+b)/2) = {w['f_mid']:.6g} {sign} "
                  f"{(w['f_a'] + w['f_b']) / 2:.6g} = (f(a)+f(b))/2; gap {w['gap']:.3g} "
                  f"(checked with {w['digits']} digits)", highlight=False, markup=False)


def _short(values: dict, limit: int = 60) -> str:
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
    from rich.tree import Tree

    for prop in ("affine", "convex", "concave"):
        cert = r[prop].certificate
        if cert is None:
            continue
        root = Tree(_tree_label(cert))
        stack = [(cert, root)]
        while stack:
            node, branch = stack.pop()
            for child in node["children"]:
                sub = branch.add(_tree_label(child))
                stack.append((child, sub))
        console.print(f"certificate: {r.expr} is {prop} in {', '.join(r.wrt)}")
        console.print(root)
        return


def _tree_label(node: dict) -> str:
    from rich.markup import escape

    c = node["curvature"]
    lo, hi = node["range"]
    rng = f"{'(-inf' if lo is None else f'[{lo:.4g}'}, {'inf)' if hi is None else f'{hi:.4g}]'}"
    return f"[{COLOURS[c]}]{c}[/] {escape(node['expr'])}  [dim]{escape(rng)} {escape(node['rule'])}[/]"


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
