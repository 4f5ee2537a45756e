"""User atoms: curvature, monotonicity and range of a scalar formula, derived with sympy (the only sympy importer).

- `convert`: the atom body as a sympy formula, with its built-ins' domain conditions;
- `analysis`: facts on intervals of the real line (domain, kinks, cells where f' and f'' keep their signs);
- `facts`: what the analysis found, as plain data (`AtomFacts`);
- `limits`: the child process (wall clock, memory cap) and the per-question alarm inside it;
- `record`: the ScalarAtom of a user atom (facts from the child, values from the body as written);
- `explain`: the words of reports.

No module-level mutable state: a network keeps its derived atoms in its own `user_atoms` field.
"""
from __future__ import annotations

from .analysis import PROPS, Analysis, analyse
from .convert import BUILTIN_FORMULAS, leaky_relu_formula, to_sympy
from .explain import explain_convex, explain_monotone
from .facts import AtomFacts, derive_facts, facts_of, fallback_facts
from .limits import (
    ATOM_SECONDS,
    MEMORY_BYTES,
    QUESTION_SECONDS,
    WALL_SECONDS,
    Asker,
    Limit,
    Unknown,
    run_each_limited,
    run_limited,
)
from .record import derive, user_atom

__all__ = [
    "ATOM_SECONDS",
    "BUILTIN_FORMULAS",
    "MEMORY_BYTES",
    "PROPS",
    "QUESTION_SECONDS",
    "WALL_SECONDS",
    "Analysis",
    "Asker",
    "AtomFacts",
    "Limit",
    "Unknown",
    "analyse",
    "derive",
    "derive_facts",
    "explain_convex",
    "explain_monotone",
    "facts_of",
    "fallback_facts",
    "leaky_relu_formula",
    "run_each_limited",
    "run_limited",
    "to_sympy",
    "user_atom",
]
