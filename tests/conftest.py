import pathlib
import sys

# test helpers (netgen.py) are imported by name; pytest's importlib mode does not put tests/ on sys.path
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
