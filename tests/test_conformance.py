"""The conformance cases (copied into tests/cases/) judged as `../shared/conformance/run` judges them, and the
xfail list kept honest: every case it names still fails, every case it does not name passes."""
from __future__ import annotations

import json
import re

import pytest
from conftest import CASES, ROOT

from dcpnet.cli import main

XFAIL = {line.split("#")[0].strip() for line in (ROOT / "tests" / "conformance-xfail.txt").read_text().splitlines()}
XFAIL.discard("")


def problems_with(path, capsys) -> list[str]:
    """What is wrong with dcpnet's answer on one case (empty when it passes)."""
    try:
        code = main(["check", "--json", str(path)])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    text = path.read_text()
    found = ["printed a traceback"] if "Traceback" in out + err else []
    if path.name.startswith("bad_"):
        want = re.search(r"#\s*expect-error:\s*(\d+):(\d+)", text)
        if code != 2:
            found.append(f"exit code {code}, expected 2")
        if want and f"{path}:{want.group(1)}:{want.group(2)}:" not in err:
            found.append(f"stderr does not name {want.group(1)}:{want.group(2)}")
        return found
    report = json.loads(out)
    checks = len(re.findall(r"^\s*check\b", text, flags=re.MULTILINE))
    claimed = [r for r in report["results"] if r["claim"] is not None]
    if code != 0 or report["ok"] is not True:
        found.append(f"exit code {code}, ok {report['ok']}")
    if len(claimed) != checks or not all(r["holds"] is True for r in claimed):
        found.append("a check line does not hold")
    for r in report["results"]:
        for prop in ("convex", "concave", "affine"):
            if r[prop]["verdict"] == "refuted":
                w = r[prop]["witness"]
                if not w["gap"] > 0 or w["digits"] < 30:
                    found.append(f"{r['expr']}: {prop} witness without a positive gap at >= 30 digits")
    return found


def test_the_xfail_list_names_only_existing_cases():
    assert XFAIL <= {p.name for p in CASES.glob("*.net")}


@pytest.mark.parametrize("path", sorted(CASES.glob("*.net")), ids=lambda p: p.name)
def test_case(path, capsys):
    found = problems_with(path, capsys)
    if path.name in XFAIL:
        assert found, f"{path.name} passes now: take it off tests/conformance-xfail.txt"
    else:
        assert not found, found
