"""Printing what dcpnet found: rich tables and trees for people, JSON for tools (SPEC sections 3 and 4).

This module and cli.py are the only ones that import rich; the console is passed in so tests can compare
exact output at a fixed width.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import sys
from contextlib import contextmanager

import numpy as np

from .errors import DcpnetError, Diagnostic, write_atomically
from .lattice import Verdict

COLOURS = {"constant": "white", "affine": "cyan", "convex": "green", "concave": "blue", "unknown": "red"}
MARKS = {Verdict.PROVED: "[green]proved[/]", Verdict.REFUTED: "[yellow]refuted[/]", Verdict.UNKNOWN: "[red]unknown[/]"}


INDENT_UP_TO = 100_000      # characters of compact JSON up to which the report is indented for people
_PLACE = re.compile(r'"\\u0000certificate (\d+)\\u0000"')


def report_json(doc) -> str:
    """A report (or a list of them) as JSON text. Certificates are written by `tree_json` (no recursion: a
    certificate of a 10,000-layer network nests 40,000 deep), each tree encoded once even where several
    properties share it; a small, shallow report is indented for people, anything else is compact (its size
    stays linear in what it says, as for the default table of a big network)."""
    from .certificate import tree_json

    reports = doc if isinstance(doc, list) else [doc]
    trees: dict[int, tuple[int, dict]] = {}

    def placeholder(entry: dict) -> dict:
        tree = entry["certificate"]
        k = trees.setdefault(id(tree), (len(trees), tree))[0]
        return {**entry, "certificate": f"\0certificate {k}\0"}

    shallow = [{**report, "results": [{**r, **{k: placeholder(v) for k, v in r.items() if _proved(v)}}
                                      for r in report["results"]]} for report in reports]
    text = json.dumps(shallow if isinstance(doc, list) else shallow[0])
    texts = {k: tree_json(tree) for k, tree in trees.values()}
    text = _PLACE.sub(lambda m: texts[int(m.group(1))], text)
    if len(text) <= INDENT_UP_TO and max((_depth(r) for r in reports), default=0) <= 64:
        text = json.dumps(doc, indent=1)
    return text


def _proved(entry) -> bool:
    """Is this entry of a result a property with a certificate (convex, concave, affine, increasing, ...)?"""
    return isinstance(entry, dict) and isinstance(entry.get("certificate"), dict)


def _certificates(result: dict) -> list[dict]:
    return [v["certificate"] for v in result.values() if _proved(v)]


def dump_json(reports: list[dict], single: bool = True) -> None:
    """The JSON report of SPEC section 4 on stdout: one object for one file, a list of them for several."""
    sys.stdout.write(report_json(reports[0] if single else reports) + "\n")


def _depth(report: dict) -> int:
    deepest = 0
    for result in report["results"]:
        for cert in _certificates(result):
            stack = [(cert, 1)]
            while stack:
                node, d = stack.pop()
                deepest = max(deepest, d)
                stack.extend((c, d + 1) for c in node["children"])
    return deepest


# -- people ----------------------------------------------------------------------------------------------
class PlainLines:
    """The `print` of the rich console that `cli.make_console` makes for a pipe or a file without colours,
    for plain strings, without importing rich: the same text (markup tags dropped, tabs expanded, control
    codes removed, never wrapped, no trailing spaces). Anything else (a table, a tree) goes to that rich
    console, made on first use."""

    def __init__(self, stream, make_rich):
        self.stream, self._make_rich, self._rich = stream, make_rich, None

    @property
    def rich(self):
        if self._rich is None:
            self._rich = self._make_rich()
        return self._rich

    @property
    def width(self) -> int:
        return self.rich.width

    def print(self, *objects, sep: str = " ", end: str = "\n", markup: bool = True, highlight=None,
              style=None) -> None:
        if not all(isinstance(o, str) for o in objects):
            self.rich.print(*objects, sep=sep, end=end, markup=markup, highlight=highlight, style=style)
            return
        text = sep.join(_drop_markup(o) if markup else o for o in objects).translate(_CONTROL_CODES)
        self.stream.write("\n".join(line.expandtabs(8).rstrip(" ") for line in text.split("\n")) + end)


# rich's markup tags (`[green]`, `[/]`); `\[` is a bracket, not a tag. Control codes as rich's Text drops them.
_TAG = re.compile(r"(\\*)\[([a-z#/@][^\[]*?)\]")
_CONTROL_CODES = dict.fromkeys(map(ord, "\a\b\v\f\r"))


def _drop_markup(text: str) -> str:
    """The text of `text` read as rich markup: tags dropped, `\\[` a bracket, `\\\\` before a tag a backslash."""
    if "[" not in text:
        return text
    out, position = [], 0
    for tag in _TAG.finditer(text):
        out.append(text[position:tag.start()].replace("\\[", "["))
        backslashes, escaped = divmod(len(tag.group(1)), 2)
        out.append("\\" * backslashes + (tag.group(0)[len(tag.group(1)):] if escaped else ""))
        position = tag.end()
    out.append(text[position:].replace("\\[", "["))
    return "".join(out)


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
        console.print(f"[{colour}]{held} of {len(checks)} checks hold[/]", highlight=False)  # no repr regexes


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
    """One row per set of variables, one column per output: the table stays as wide as the outputs, however
    many params there are. Params that get the same answers for every output share a row."""
    from rich.table import Table

    outputs = list(dict.fromkeys(r.expr for r in rows))
    cells: dict[tuple, dict[str, str]] = {}
    for r in rows:
        cells.setdefault(tuple(r.wrt), {})[r.expr] = _cell(r)
    lines = _merge_single_params(net, cells, outputs)
    label_width = min(max(len(label) for label, _ in lines), max(20, console.width // 2))
    per_table = max(1, (console.width - label_width - 4) // (CELL_WIDTH + 3))
    for start in range(0, len(outputs), per_table):
        shown = outputs[start:start + per_table]
        table = Table(title="curvature of each output", title_justify="left")
        table.add_column("in")
        for out in shown:
            table.add_column(out)
        for label, by_output in lines:
            table.add_row(label, *(by_output.get(o, "") for o in shown))
        console.print(table)
    for r in rows:
        if r.groups is not None:
            _print_groups(console, r)


CELL_WIDTH = len("not concave")
GROUP_LINES = 8             # convex groups listed one a line, at most this many (--json has them all)


def _merge_single_params(net, cells: dict[tuple, dict[str, str]], outputs) -> list[tuple[str, dict[str, str]]]:
    """(label, cells by output) per row; single params with equal rows become one row ("each of ...")."""
    lines: list[tuple[str, dict[str, str]]] = []
    alike: dict[tuple, list[str]] = {}
    for wrt, by_output in cells.items():
        if len(wrt) == 1 and wrt[0] in net.params and len(net.params) > 1:
            alike.setdefault(tuple(by_output.get(o, "") for o in outputs), []).append(wrt[0])
        else:
            lines.append((_wrt_label(net, list(wrt)), by_output))
    for key, names in alike.items():
        label = names[0] if len(names) == 1 else f"each of {compress_names(names)}"
        lines.append((label, dict(zip(outputs, key))))
    return lines


def _print_groups(console, r) -> None:
    """The maximal groups of params proved convex together: members common to every group named once,
    each group on a line of its own when they do not fit on one."""
    head = f"{r.expr} is not proved convex in all params jointly"
    if not r.groups:
        console.print(f"{head}, nor in any param alone", highlight=False, markup=False)
        return
    common = set.intersection(*map(set, r.groups)) if len(r.groups) > 1 else set()
    rest = ["{" + compress_names([p for p in g if p not in common]) + "}" for g in r.groups]
    shared = compress_names([p for p in r.groups[0] if p in common])
    one_line = f"{head}; convex together in{f' (each also with {shared})' if common else ''}: " + "; ".join(rest)
    if len(one_line) <= console.width:
        console.print(one_line, highlight=False, markup=False)
        return
    console.print(f"{head}; convex together in {len(rest)} groups:", highlight=False, markup=False)
    if common:
        console.print(f"  (every group also holds {shared})", highlight=False, markup=False)
    for group in rest[:GROUP_LINES]:
        console.print(f"  {group}", highlight=False, markup=False)
    if len(rest) > GROUP_LINES:
        console.print(f"  … and {len(rest) - GROUP_LINES} more (--json lists them all)", highlight=False,
                      markup=False)


def compress_names(names: list[str]) -> str:
    """Names in a short form: a run of three or more numbered names with one stem becomes `W1…W9`.

    >>> compress_names(["W0", "b0", "Wx1", "b1", "Wx2", "b2", "Wx3", "b3", "w", "c"])
    'W0, b0…b3, Wx1…Wx3, w, c'
    >>> compress_names(["z1", "z2", "z4", "z5", "z6", "z07"])
    'z1, z2, z4…z6, z07'
    """
    import re

    stems: dict[tuple[str, bool], list[int]] = {}
    for name in names:
        m = re.fullmatch(r"(.*?[^0-9])(0|[1-9][0-9]*)", name)
        stems.setdefault((m.group(1), True) if m else (name, False), []).append(int(m.group(2)) if m else 0)
    parts = []
    for (stem, numbered), numbers in stems.items():
        if not numbered:
            parts.append(stem)
            continue
        for run in _runs(numbers):
            parts.extend([f"{stem}{run[0]}…{stem}{run[-1]}"] if len(run) >= 3 else [f"{stem}{k}" for k in run])
    return ", ".join(parts)


def _runs(numbers: list[int]) -> list[list[int]]:
    """Maximal runs of consecutive integers, in the given order."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


def _wrt_label(net, wrt: list[str]) -> str:
    if wrt == net.params and len(wrt) > 1:
        return "params (jointly)"
    if wrt == net.inputs and len(wrt) > 1:
        return f"inputs ({', '.join(wrt)})"
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

    console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False, soft_wrap=True, emoji=False)
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
        capture = Console(file=io.StringIO(), width=10_000, no_color=True, soft_wrap=True, emoji=False)
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
    from html import escape as esc  # here: a notebook's need, not a check's
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
    from html import escape as esc

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
        label = esc(f"{item['curvature']} {item['expr']}  ({item['rule']})")
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
    from .refute import witness_arrays  # a single number fills a fixed array (the compact form)

    env = {k: np.repeat(v[None], len(ts), axis=0) for k, v in witness_arrays(net, witness, "fixed").items()}
    a_values, b_values = witness_arrays(net, witness, "a"), witness_arrays(net, witness, "b")
    for k, a in a_values.items():
        env[k] = a[None] + np.multiply.outer(ts, b_values[k] - a)
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
