"""What `dcpnet check` prints: exact text at a fixed width, the JSON report, exit codes, the witness plot."""
import contextlib
import io
import json
import os
import pathlib
from types import SimpleNamespace

import pytest
from conftest import CASES as CONFORMANCE
from hypothesis import given, settings
from hypothesis import strategies as st

from dcpnet.cli import main

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_json_report_follows_the_spec(capsys):
    code = main(["check", "--json", str(CONFORMANCE / "icnn.net")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True
    assert [r["line"] for r in report["results"]] == [16, 17, 18, 19]
    proved = report["results"][0]
    assert proved["claim"] == "convex" and proved["holds"] is True and proved["curvature"] == "convex"
    cert = proved["convex"]["certificate"]
    assert set(cert) == {"expr", "curvature", "range", "rule", "children"} and cert["range"] == [0.0, None]
    refuted = report["results"][1]["convex"]
    assert refuted["verdict"] == "refuted" and refuted["witness"]["digits"] >= 30
    assert set(refuted["witness"]) >= {"a", "b", "fixed", "index", "f_a", "f_b", "f_mid", "gap", "digits"}


def test_default_table_answers_the_seed_question(capsys, tmp_path):
    path = tmp_path / "seed.net"
    path.write_text("input x[3] >= 0\nparam W1[4, 3] >= 0\nparam W2[2, 4] >= 0\n"
                    "y = relu(W2 @ relu(W1 @ x))\nloss = softplus(y[0] - y[1])\noutput y, loss\n")
    assert main(["check", str(path), "--width", "100"]) == 0
    out = capsys.readouterr().out
    assert "┃ in               ┃ y       ┃ loss    ┃" in out                  # one column per output
    assert "│ x                │ affine  │ convex  │" in out
    assert "│ params (jointly) │ neither │ neither │" in out
    assert "│ each of W1, W2   │ affine  │ convex  │" in out                  # params alike share a row
    assert "y is not proved convex in all params jointly; convex together in: {W1}; {W2}" in out


def test_a_check_that_does_not_hold_exits_1_and_says_why(capsys, tmp_path):
    path = tmp_path / "bad_claim.net"
    path.write_text("input x\ny = (x^2 - 1)^2\ncheck convex(y) in x\n")
    assert main(["check", str(path), "--width", "200"]) == 1
    out = capsys.readouterr().out
    assert "✗ line 3: convex(y) in x: refuted" in out
    assert "^2 is not monotone on [-1, inf)" in out or "is not monotone on [-1, inf" in out


def test_tree_prints_the_certificate(capsys):
    assert main(["check", str(CONFORMANCE / "icnn.net"), "--tree", "--width", "200"]) == 0
    out = capsys.readouterr().out
    assert "certificate: f is convex in x" in out
    assert "z1 = relu(W0 @ x + b0)" in out


def test_unknown_wrt_variable_is_bad_input(capsys):
    assert main(["check", str(CONFORMANCE / "icnn.net"), "--wrt", "x,Wz_"]) == 2
    assert "--wrt: unknown variable `Wz_` (did you mean `Wz`?)" in capsys.readouterr().err


def test_plot_draws_the_witness(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "witness.png"
    assert main(["check", str(EXAMPLES / "seed_square.net"), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["witness.png"]   # no temp file left behind


def test_plot_into_a_missing_folder_is_bad_input(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code = main(["check", str(EXAMPLES / "seed_square.net"), "--plot", str(tmp_path / "no" / "w.png")])
    assert code == 2 and "cannot write" in capsys.readouterr().err


# -- a pipe without colours: plain lines, as rich would print them ---------------------------------------
_PIECES = st.text(alphabet="ab x=[]/\\#@:.\t\r\a✓…", max_size=12)


@st.composite
def _markup(draw) -> str:
    """Text with dcpnet's kind of markup: tags around pieces, escaped brackets, backslashes, stray brackets."""
    from rich.markup import escape

    parts = []
    for piece in draw(st.lists(_PIECES, max_size=5)):
        tag = draw(st.sampled_from(["", "green", "bold red", "#ff0000"]))
        piece = escape(piece)                        # its own brackets are text
        parts.append(f"[{tag}]{piece}[/]" if tag else piece)
    return "".join(parts)


def _printed(console_of, lines: list[tuple[str, bool]]) -> tuple[str, object]:
    out = io.StringIO()                        # not a terminal: what `dcpnet check | cat` meets
    with contextlib.redirect_stdout(out):
        console = console_of()
        for text, markup in lines:
            console.print(text, highlight=False, markup=markup)
        if hasattr(console, "file"):
            console.file.flush()
    return out.getvalue(), console


@given(text=_markup(), plain=_PIECES)
@settings(max_examples=300, deadline=None)
def test_plain_lines_print_what_the_rich_console_prints_into_a_pipe(text, plain):
    from dcpnet.cli import make_console
    from dcpnet.report import PlainLines

    assert not {"COLUMNS", "FORCE_COLOR", "NO_COLOR"} & set(os.environ)   # pytest's own run: a plain pipe
    args = SimpleNamespace(color=None, width=None)
    lines = [(text, True), (plain, False), (f"{text}\n  {text}  \n", True)]
    by_plain, console = _printed(lambda: make_console(args), lines)
    by_rich, _ = _printed(lambda: make_console(args)._make_rich(), lines)   # the console it stands for
    assert isinstance(console, PlainLines) and by_plain == by_rich
