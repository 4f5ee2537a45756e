"""The Python API answers as the command line does: same verdicts for the same question, the same bad input
refused with the same message; short reprs for notebooks; enums equal to their JSON strings."""
from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dcpnet
from dcpnet.cli import main

ICNN = EXAMPLES / "icnn.net"
NET = dcpnet.load(str(ICNN))
NAMES = [*NET.variables, "inputs", "params", "xx", "W", "", " x", "Z1 ", "nope"]


def cli_answer(target: str, wrt: str, capsys, tmp_path) -> tuple:
    """(verdicts, None) or (None, error message) from `dcpnet check --json --wrt` on a file whose only output
    is `target`."""
    text = "\n".join(line for line in ICNN.read_text().splitlines()
                     if not line.startswith(("check", "output")))
    path = tmp_path / "icnn.net"
    path.write_text(text + f"\noutput {target}\n")
    code = main(["check", str(path), "--json", "--budget", "0.2", "--wrt", wrt])
    out, err = capsys.readouterr()
    if code == 2:
        return None, err.split("error: ", 1)[1].splitlines()[0].removeprefix("--")   # `--wrt:` names the option
    result = json.loads(out)["results"][0]
    return tuple(result[p]["verdict"] for p in ("convex", "concave", "affine")), None


def api_answer(target: str, wrt) -> tuple:
    try:
        r = dcpnet.verify(NET, target, wrt, budget=0.2)
    except dcpnet.DcpnetError as err:
        return None, str(err).split("error: ", 1)[1].splitlines()[0]
    return tuple(r[p].verdict.value for p in ("convex", "concave", "affine")), None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(["f", "z1", "z3"]), wrt=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
def test_api_and_cli_agree(target, wrt, capsys, tmp_path):
    text = ",".join(wrt)
    cli = cli_answer(target, text, capsys, tmp_path) if text.strip(", ") else None
    if cli is None:                            # argparse-level emptiness: the API must still refuse
        with pytest.raises(dcpnet.DcpnetError):
            dcpnet.verify(NET, target, text, budget=0.2)
        return
    assert api_answer(target, text) == cli
    if all(w == w.strip() and w for w in wrt):  # a list of names means the same as the comma list
        assert api_answer(target, wrt) == cli


def test_a_string_wrt_is_one_name_not_letters():
    r = dcpnet.verify(NET, "f", "params", budget=0.2)
    assert r.wrt == NET.params and r.affine.verdict != "proved"
    with pytest.raises(dcpnet.DcpnetError, match="unknown variable `xx`"):
        dcpnet.verify(NET, "f", ["xx"])
    with pytest.raises(dcpnet.DcpnetError, match="no expression named `nope`"):
        dcpnet.verify(NET, "nope", ["x"])


def test_enums_equal_their_json_strings():
    r = dcpnet.verify(NET, "f", ["x"], budget=0.2)
    assert r.convex.verdict == "proved" and r.curvature == "convex" and r.concave.verdict == "refuted"
    assert json.dumps(r.convex.verdict) == '"proved"'


def test_reprs_are_short_and_explain_matches_the_cli(capsys):
    r = dcpnet.verify(dcpnet.load(str(EXAMPLES / "seed_square.net")), "h", ["x"])
    assert len(repr(r)) < 200 and "convex refuted" in repr(r)
    assert len(repr(NET)) < 200 and "icnn.net" in repr(NET)
    text = r.explain()
    assert "convex: refuted" in text and "witness: a = x=" in text and "hint:" in text
    assert "<table>" in r._repr_html_() and "<details>" not in r._repr_html_()   # no tree when nothing proved
    proved = dcpnet.verify(NET, "f", ["x"], budget=0.2)
    assert "<details>" in proved._repr_html_()
    results = dcpnet.check_file(str(EXAMPLES / "seed_square.net"))
    assert main(["check", str(EXAMPLES / "seed_square.net")]) == 0
    printed = capsys.readouterr().out
    for res in results:                         # a check line explains itself exactly as the CLI prints it
        assert res.explain() in printed
