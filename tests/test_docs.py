"""The reference in docs/ stays in step with the code: examples parse and their check lines hold, every built-in,
command-line option and JSON key is documented, links resolve; and the pre-commit hook and py.typed are there."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dcpnet.atoms import BUILTIN_NAMES
from dcpnet.graph import load_text

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(page: Path, lang: str) -> list[tuple[int, str]]:
    """(line, text) of each fenced block in `lang`."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == lang]


NET_BLOCKS = [(p, line, src) for p in PAGES for line, src in blocks(p, "net")]


def test_the_reference_is_there():
    names = {p.name for p in PAGES}
    assert {"language.md", "cli.md", "json-report.md"} <= names
    assert len(NET_BLOCKS) >= 5


@pytest.mark.parametrize("page,line,src", NET_BLOCKS, ids=[f"{p.name}:{line}" for p, line, _ in NET_BLOCKS])
def test_every_net_example_parses_and_its_checks_hold(page, line, src):
    from dcpnet.verify import Verifier, run_checks

    net = load_text(src, f"{page.name}:{line}")
    assert net.nodes
    if net.checks:
        results = run_checks(Verifier(net, seed=0, budget=3.0), None)   # the CLI default
        failing = [f"line {r.line}: {r.claim}({r.expr})" for r in results if r.holds is False]
        assert not failing, failing


def test_a_broken_example_would_be_caught():
    """The block pattern finds the blocks, and load_text rejects a bad one (so the test above can fail)."""
    from dcpnet.errors import DcpnetError

    page = "text\n```net\ninput x\ny = relu(x\n```\n"
    (src,) = [m.group(2) for m in FENCE.finditer(page) if m.group(1) == "net"]
    with pytest.raises(DcpnetError):
        load_text(src)


def _builtins_section() -> str:
    text = (DOCS / "language.md").read_text(encoding="utf-8")
    return text.split("\n## Built-in functions", 1)[1].split("\n## ", 1)[0]


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| `")]


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_builtin_is_documented(name):
    """Each built-in heads a row of a table in the built-ins section of the language reference, as `name(…)`."""
    rows = [r for r in _table_rows(_builtins_section()) if re.match(rf"\| `{name}\(", r)]
    assert rows, f"`{name}` has no row in docs/language.md"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) >= 3 and any(cells[1:]), f"the row of `{name}` is empty"


def test_the_builtin_rows_name_only_builtins():
    """No row documents a function the atom table does not have (a removed or misspelt one)."""
    names = {m.group(1) for r in _table_rows(_builtins_section()) if (m := re.match(r"\| `([a-z_0-9]+)\(", r))}
    assert names <= set(BUILTIN_NAMES), names - set(BUILTIN_NAMES)


def _cli_options() -> list[tuple[str, str]]:
    from dcpnet.cli import make_parser

    parser = make_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    out = []
    for command, p in sub.choices.items():
        for action in p._actions:
            out += [(command, s) for s in action.option_strings if s.startswith("--") and s != "--help"]
    return out


@pytest.mark.parametrize("command,option", _cli_options())
def test_every_option_is_documented(command, option):
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    section = text.split(f"## `dcpnet {command}`", 1)
    assert len(section) == 2, f"docs/cli.md has no section for `dcpnet {command}`"
    body = section[1].split("\n## ", 1)[0]
    assert f"`{option}" in body, f"`{option}` of `dcpnet {command}` is not in its section of docs/cli.md"


def test_every_command_is_documented():
    from dcpnet.cli import make_parser

    sub = next(a for a in make_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for command in sub.choices:
        assert f"## `dcpnet {command}`" in text, command
    for action in make_parser()._actions:   # options of `dcpnet` itself (before the command)
        for option in action.option_strings:
            assert option in ("-h", "--help") or f"`{option}" in text, option


def test_the_exit_codes_are_documented():
    from dcpnet import cli

    text = (DOCS / "cli.md").read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_BAD_INPUT):
        assert f"| `{code}` |" in text, code


def _json_keys() -> dict[str, set[str]]:
    """Every key dcpnet writes, by level, from real reports: checks with proofs, witnesses and conditions, and
    the default table (with convex groups)."""
    from dcpnet.verify import Verifier, run_checks

    nets = [
        "input x\natom sq(t) = t^2\ng = x^2 - 1\nh = sq(g)\ncheck convex(g) in x\ncheck not convex(h) in x\n",
        "input u[2]\ninput v\ny = quad_over_lin(u, v)\ncheck convex(y) in u, v\n",
        "input x[2] >= 0\nparam W1[2, 2] >= 0, W2[2] >= 0\ny = W2 @ relu(W1 @ x)\noutput y\n",
    ]
    keys: dict[str, set[str]] = {"result": set(), "verdict": set(), "certificate": set(), "witness": set()}
    for text in nets:
        for r in run_checks(Verifier(load_text(text), seed=0, budget=1.0), None):
            j = r.as_json()
            keys["result"] |= set(j)
            for prop in ("convex", "concave", "affine"):
                keys["verdict"] |= set(j[prop])
                if "certificate" in j[prop]:
                    keys["certificate"] |= set(j[prop]["certificate"])
                if "witness" in j[prop]:
                    keys["witness"] |= set(j[prop]["witness"])
    return keys


def test_every_json_key_is_documented():
    keys = _json_keys()
    assert {"convex_groups", "conditions"} <= keys["result"] and keys["witness"] and keys["certificate"]
    text = (DOCS / "json-report.md").read_text(encoding="utf-8")
    rows = "\n".join(line for line in text.splitlines() if line.startswith("| `"))
    for level, names in keys.items():
        for k in sorted(names):
            assert f"`{k}`" in rows, f"the {level} key `{k}` has no row in docs/json-report.md"
    for k in ("file", "ok", "results"):
        assert f"| `{k}` |" in rows


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_resolve(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target}"
        if anchor and dest.suffix == ".md":
            body = FENCE.sub("", dest.read_text(encoding="utf-8"))
            anchors = {_slug(h) for h in re.findall(r"^#+ (.*)$", body, re.MULTILINE)}
            assert anchor in anchors, f"{page.name}: no heading for #{anchor} in {dest.name}"


def test_slug_matches_github():
    assert _slug("`dcpnet check`") == "dcpnet-check"
    assert _slug("Choices where the contract is silent") == "choices-where-the-contract-is-silent"


# -- the pre-commit hook and the type marker (issue 18, item 9) --------------------------------------------
def _hook() -> dict[str, str]:
    """The fields of the one hook in .pre-commit-hooks.yaml (a flat YAML list; no YAML library needed)."""
    text = (ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    items = [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]
    assert items[0].startswith("- id:") and sum(line.startswith("- ") for line in items) == 1
    fields = {}
    for line in items:
        key, _, value = line.lstrip("- ").partition(":")
        fields[key.strip()] = value.strip()
    return fields


def test_the_pre_commit_hook_runs_dcpnet_check_on_net_files():
    from dcpnet import cli
    from dcpnet.cli import make_parser

    hook = _hook()
    assert hook["id"] == "dcpnet-check" and hook["language"] == "python"
    entry = hook["entry"].split()
    assert entry[:2] == ["dcpnet", "check"]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    script = re.search(r'^dcpnet = "dcpnet\.cli:(\w+)"', pyproject, re.MULTILINE)      # the console script it calls
    assert script and callable(getattr(cli, script.group(1)))
    make_parser().parse_args([*entry[1:], "a.net"])                         # a valid command line
    files = re.compile(hook["files"])
    assert all(files.search(p) for p in ("a.net", "models/b.net"))
    assert not any(files.search(p) for p in ("a.net.py", "network.txt", "a.netx"))


def test_the_package_is_typed():
    assert (ROOT / "dcpnet" / "py.typed").is_file()
    # hatchling ships every file of the listed package directory, the marker among them
    assert re.search(r'packages = \["dcpnet"\]', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
