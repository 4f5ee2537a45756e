"""What the tests share: where the sample files are. Everything a test reads lies inside the repository.

`tests/cases/` holds a copy of the shared conformance cases (refresh it with
`cp ../shared/conformance/*.net tests/cases/`), so the suite runs on a fresh clone with nothing beside it.
"""
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "cases"                # the conformance cases (`bad_*.net` must be rejected)
EXAMPLES = ROOT / "examples"
GOLDEN = ROOT / "tests" / "golden"              # exact CLI output at a fixed console width

# test helpers (netgen.py) are imported by name; pytest's importlib mode does not put tests/ on sys.path
sys.path.insert(0, str(ROOT / "tests"))

# dcpnet keeps parser tables and line templates in the user cache folder; the tests use a folder of their own
# (never the user's), shared by the processes of one session
if "DCPNET_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["DCPNET_CACHE_DIR"] = tempfile.mkdtemp(prefix="dcpnet-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DCPNET_CACHE_DIR"], True)
