"""User atoms: curvature, monotonicity and range of a scalar formula, derived with sympy (the only sympy importer).

- `convert`: the atom body as a sympy formula, with its built-ins' domain conditions;
- `analysis`: facts on intervals of the real line (domain, kinks, cells where f' and f'' keep their signs);
- `derivation`: the analysis rounded to interval facts, and the in-process record of a sympy formula;
- `facts`: what the analysis found, as plain data (`AtomFacts`);
- `kept`: the facts kept between runs (a network checked before needs no sympy);
- `limits`: the child process (wall clock, memory cap) and the per-question alarm inside it;
- `record`: the ScalarAtom of a user atom (facts kept or from the child, values from the body as written);
- `explain`: the words of reports.

The names below are loaded on first use: `user_atom` with kept facts imports no sympy. No module-level
mutable state: a network keeps its derived atoms in its own `user_atoms` field.
"""
from __future__ import annotations

from importlib import import_module

_HOMES = {
    "PROPS": "analysis", "Analysis": "analysis", "analyse": "analysis",
    "BUILTIN_FORMULAS": "convert", "leaky_relu_formula": "convert", "to_sympy": "convert",
    "derive": "derivation", "derive_facts": "derivation", "facts_of": "derivation",
    "explain_convex": "explain", "explain_monotone": "explain",
    "AtomFacts": "facts", "fallback_facts": "facts",
    "ATOM_SECONDS": "limits", "MEMORY_BYTES": "limits", "QUESTION_SECONDS": "limits", "WALL_SECONDS": "limits",
    "Asker": "limits", "Limit": "limits", "Unknown": "limits", "run_each_limited": "limits",
    "run_limited": "limits",
    "user_atom": "record",
}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return __all__
