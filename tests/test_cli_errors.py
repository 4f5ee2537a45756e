"""Bad input through the command line (SPEC section 3): exit code 2, `FILE:LINE:COL: error: MESSAGE` on
stderr, then the source line and a caret under the column, and never a traceback."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dcpnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
from conftest import CASES as CONFORMANCE

BAD_CASES = sorted(CONFORMANCE.glob("bad_*.net"))


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse leaves through SystemExit
        code = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def assert_points_at(err: str, path: Path, line: int, col: int) -> None:
    """The first diagnostic names FILE:LINE:COL, shows that source line and puts a caret under the column."""
    head, shown, caret = err.splitlines()[:3]
    assert head.startswith(f"{path}:{line}:{col}: error: "), head
    source = path.read_text().splitlines()[line - 1]
    assert shown == "    " + source
    assert caret == "    " + " " * (col - 1) + "^"


@pytest.mark.parametrize("path", BAD_CASES, ids=[p.name for p in BAD_CASES])
def test_conformance_bad_cases(path, capsys):
    want = re.search(r"#\s*expect-error:\s*(\d+):(\d+)", path.read_text())
    code, out, err = run(["check", str(path)], capsys)
    assert code == 2 and out == ""
    assert_points_at(err, path, int(want.group(1)), int(want.group(2)))


@pytest.mark.parametrize("text, line, col, words", [
    ("input x\ny = relu(x +)\n", 2, 13, "unexpected ')'"),
    ("input x[3]\nparam W[2, 2]\ny = W @ x\n", 3, 7, "shape mismatch"),
    ("input x\r\ny = x\r\ncheck convex(y) in xx\r\n", 3, 20, "did you mean `x`"),
    ("input x\n\n\ty =\tsqrtt(x)\n", 3, 6, "did you mean `sqrt`"),
    ("input x in [2, 1]\n", 1, 13, "lower bound exceeds"),
    ("input x\ny = x * 1e999", 2, 9, "not a finite number"),
])
def test_own_bad_files(tmp_path, capsys, text, line, col, words):
    path = tmp_path / "bad.net"
    path.write_bytes(text.encode())
    code, _, err = run(["check", str(path)], capsys)
    assert code == 2
    head, shown, caret = err.splitlines()[:3]
    assert head.startswith(f"{path}:{line}:{col}: error: ") and words in head
    source = text.replace("\r\n", "\n").split("\n")[line - 1]
    assert shown == "    " + source
    pad = "".join(c if c == "\t" else " " for c in source[:col - 1])
    assert caret == "    " + pad + "^"


def test_every_error_of_a_file_is_printed(tmp_path, capsys):
    path = tmp_path / "many.net"
    path.write_text("input x[3]\na = rleu(x)\nb = x @ x @ x\nc = x[3]\ncheck convex(a) in q\n")
    code, _, err = run(["check", str(path)], capsys)
    heads = [ln for ln in err.splitlines() if ": error: " in ln]
    assert code == 2
    assert [h.split(": error:")[0] for h in heads] == [f"{path}:2:5", f"{path}:3:11", f"{path}:4:7",
                                                       f"{path}:5:20"]


def test_missing_file(tmp_path, capsys):
    path = tmp_path / "nowhere.net"
    code, out, err = run(["check", str(path)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"{path}:1:1: error: ") and "cannot read" in err


def test_a_directory_given_as_the_file(tmp_path, capsys):
    code, _, err = run(["check", str(tmp_path)], capsys)
    assert code == 2 and err.startswith(f"{tmp_path}:1:1: error: ")


def test_binary_garbage(tmp_path, capsys):
    path = tmp_path / "garbage.net"
    path.write_bytes(bytes(range(256)) * 3)
    code, _, err = run(["check", str(path)], capsys)
    assert code == 2
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: ", err)


def test_control_characters_are_positioned_and_not_echoed(tmp_path, capsys):
    path = tmp_path / "nul.net"
    path.write_bytes(b"input x\ny = x\x00 + 1\x1b[31m\n")
    code, _, err = run(["check", str(path)], capsys)
    assert code == 2 and err.startswith(f"{path}:2:6: error: ")
    assert "\x00" not in err and "\x1b" not in err


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n", "\ufeff"])
def test_an_empty_file_is_an_empty_network(tmp_path, capsys, text):
    path = tmp_path / "empty.net"
    path.write_text(text, encoding="utf-8")
    code, _, err = run(["check", str(path)], capsys)
    assert code == 0 and "error" not in err


@pytest.mark.parametrize("argv", [
    ["check", "--seed", "-1", "{f}"],
    ["check", "--seed", "x", "{f}"],
    ["check", "--bogus", "{f}"],
    ["check"],
    ["frobnicate", "{f}"],
    [],
])
def test_bad_options(tmp_path, capsys, argv):
    path = tmp_path / "ok.net"
    path.write_text("input x\ny = x\n")
    code, _, err = run([a.format(f=path) for a in argv], capsys)
    assert code == 2 and "error" in err
