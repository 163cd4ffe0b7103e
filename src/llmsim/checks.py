"""Argument checks shared by every public entry point (estimate, serve, train, plan, workloads).

Python's loose conversions are the usual source of a silent wrong number: ``bool('no')`` is
True, ``float('5')`` reads a string, ``True`` passes as the integer 1. These predicates accept
exactly what they name, numpy scalars included, and nothing else.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from .errors import LlmsimError

# The longest fixed time a setting may add (a client turnaround, an engine's host time per
# iteration, a hand-off, a per-token or per-layer time ...): an hour is far beyond any engine's,
# and keeps the simulated clock (float64 seconds) where it resolves microseconds.
MAX_SETTING_S = 3600.0


def is_int(v: Any) -> bool:
    """An integer (numpy integers too), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def python_scalars(obj: Any) -> None:
    """Replace a dataclass instance's numpy integer / float fields by Python ints / floats, in
    place (frozen ones too): numpy scalars are accepted wherever a number is, but an int16 tp or
    batch would overflow in the products computed from it (byte counts, KV tokens)."""
    for name in getattr(obj, "__dataclass_fields__", {}):
        v = getattr(obj, name)
        if isinstance(v, np.integer) and not isinstance(v, np.bool_):
            object.__setattr__(obj, name, int(v))
        elif isinstance(v, np.floating):
            object.__setattr__(obj, name, float(v))


def is_number(v: Any) -> bool:
    """A real number (int or float, numpy scalars too), not a bool or a string."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


@overload
def check_bool(name: str, v: Any, *, allow_none: Literal[False] = False, hint: str | None = None) -> bool: ...
@overload
def check_bool(name: str, v: Any, *, allow_none: bool, hint: str | None = None) -> bool | None: ...
def check_bool(name: str, v: Any, *, allow_none: bool = False, hint: str | None = None) -> bool | None:
    """An on/off switch as a real bool (numpy bools too); None too if `allow_none`. A truthy
    string or number is an LlmsimError naming `name`."""
    if v is None and allow_none:
        return None
    if not isinstance(v, (bool, np.bool_)):
        raise LlmsimError(f"{name} must be True or False{' (or None)' if allow_none else ''}, got {v!r}",
                          hint=hint or f"pass {name}=True or {name}=False")
    return bool(v)


def check_seed(seed: Any, hint: str = "e.g. seed=0; the same seed gives the same results") -> int:
    """A seed as an int: an integer >= 0 (numpy's generators take no other)."""
    if not is_int(seed) or seed < 0:
        raise LlmsimError(f"seed must be an integer >= 0, got {seed!r}", hint=hint)
    return int(seed)
