"""A load sweep: one serving simulation per load level, read as a latency-throughput curve.

Benchmark clients are run this way (vLLM's `benchmark_serving` over `--max-concurrency` values,
genai-perf's `--concurrency-range`, InferenceMAX's concurrency grid): the same deployment and the
same request lengths at several closed-loop concurrencies (or open-loop rates), one point each.
Every point here is an ordinary `simulate` run -- same deployment, same seed, its own workload --
so a point of a sweep is exactly what `llmsim serve` gives for that level alone.

What the sweep adds over the points:
- `max_load_meeting_slo`: the highest level at which at least `attainment_target` of the
  counted requests met both the TTFT and the TPOT target (DistServe's SLO attainment; 0.9 by
  default). The levels are simulated, not interpolated, so the answer is one of them; None when
  no level meets it (the lowest already misses) or no SLO was given. Latency is not guaranteed to
  grow with load at every step of a closed loop, so this is the highest meeting level, not the
  first failing one minus one: `points` shows each.
- `per_request()`: the points' per-request rows in one table, with the level as the first column.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..checks import is_int, is_number
from ..errors import LlmsimError
from .metrics import SLO
from .simulate import Deployment, ServeResult, simulate
from .workload import Workload

SWEEP_BY = {"concurrency": "concurrency", "rate": "rate_per_s"}  # what is swept -> its key in each point
MAX_SWEEP_POINTS = 64
DEFAULT_ATTAINMENT_TARGET = 0.9


def _valid_level(by: str, v) -> bool:
    """A concurrency is an integer >= 1, a rate a positive, finite number of requests/s."""
    return is_int(v) and v >= 1 if by == "concurrency" else is_number(v) and math.isfinite(v) and v > 0


def parse_loads(text: str, by: str) -> list[int] | list[float]:
    """Parse a `--concurrency` / `--rate` value: one level ("64") or several ("1,4,16,64").

    Concurrencies are integers >= 1, rates positive finite numbers; levels are returned in
    ascending order, and one given twice is an error (it would be simulated twice)."""
    if by not in SWEEP_BY:
        raise LlmsimError(f"a sweep is over 'concurrency' or 'rate', got {by!r}")
    flag = f"--{by}"
    if not isinstance(text, str) or not text.strip():
        raise LlmsimError(f"{flag} needs a value, got {text!r}", hint=f"e.g. {flag} 16, or {flag} 1,4,16,64 for a sweep")
    items = [s.strip() for s in text.split(",")]
    if any(s == "" for s in items):
        raise LlmsimError(f"{flag} {text!r} has an empty entry", hint=f"separate the levels with single commas, e.g. {flag} 1,4,16,64")
    out: list = []
    for s in items:
        try:
            v = int(s) if by == "concurrency" else float(s)
        except ValueError:
            want = "an integer" if by == "concurrency" else "a number"
            raise LlmsimError(f"{flag} must be {want}{' >= 1' if by == 'concurrency' else ''}, got {s!r}",
                              hint=f"one level, or several comma-separated for a sweep, e.g. "
                                   f"{flag} {'1,4,16,64' if by == 'concurrency' else '0.5,1,2,4'}") from None
        if not _valid_level(by, v):
            raise (LlmsimError(f"--concurrency must be an integer >= 1, got {v}", hint="the number of clients, e.g. --concurrency 1,4,16,64")
                   if by == "concurrency" else
                   LlmsimError(f"--rate must be a positive number of requests per second, got {s}", hint="e.g. --rate 0.5,1,2,4"))
        out.append(v)
    _check_count(out, flag)
    return sorted(out)


def _check_count(levels: list, name: str) -> None:
    """Each level once, and at most MAX_SWEEP_POINTS of them."""
    if len(set(levels)) != len(levels):
        dup = sorted({v for v in levels if levels.count(v) > 1})
        raise LlmsimError(f"{name} lists {', '.join(f'{v:g}' for v in dup)} more than once", hint="give each level once")
    if len(levels) > MAX_SWEEP_POINTS:
        raise LlmsimError(f"{name} lists {len(levels)} levels; a sweep takes at most {MAX_SWEEP_POINTS}",
                          hint="space the levels out, e.g. powers of two")


@dataclass(frozen=True)
class SweepPoint:
    load: int | float  # the concurrency (clients) or the rate (requests/s)
    result: ServeResult


@dataclass(frozen=True)
class SweepResult:
    by: str  # 'concurrency' | 'rate'
    points: list[SweepPoint]
    slo: SLO | None = None
    attainment_target: float = DEFAULT_ATTAINMENT_TARGET
    wall_s: float = field(default=0.0)

    @property
    def key(self) -> str:
        """The level's key in each point: 'concurrency' or 'rate_per_s'."""
        return SWEEP_BY[self.by]

    def max_load_meeting_slo(self) -> int | float | None:
        """The highest level whose SLO attainment is at least `attainment_target` (None: no SLO
        given, or no level meets it)."""
        if self.slo is None:
            return None
        ok = [p.load for p in self.points
              if p.result.summary.get("slo_attainment") is not None and p.result.summary["slo_attainment"] >= self.attainment_target]
        return max(ok) if ok else None

    def summary(self) -> dict:
        """`{"sweep_by", "points": [{<level key>: level, **serve summary}], ...}`: each point carries
        the whole `llmsim serve --json` summary of its level."""
        s: dict = {"sweep_by": self.by, "points": [{self.key: p.load, **p.result.summary} for p in self.points],
                   "simulation_wall_s": self.wall_s}
        if self.slo is not None:
            s["slo"] = {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms, "attainment_target": self.attainment_target}
            s["max_load_meeting_slo"] = self.max_load_meeting_slo()
        return s

    def per_request(self) -> dict[str, np.ndarray]:
        """Every point's per-request rows (`ServeResult.per_request`: the same columns at every
        level, one deployment), the level first."""
        tables = [p.result.per_request() for p in self.points]
        out = {self.key: np.concatenate([np.full(len(t["request_id"]), p.load) for t, p in zip(tables, self.points)])}
        out.update({c: np.concatenate([t[c] for t in tables]) for c in tables[0]})
        return out


def sweep(dep: Deployment, by: str, loads: list[int] | list[float], workload: Callable[[int | float], Workload], *,
          slo: SLO | None = None, attainment_target: float = DEFAULT_ATTAINMENT_TARGET, streaming: bool = False,
          progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Simulate `dep` once per level in `loads`, each on `workload(level)` (which builds the
    workload for that concurrency or rate, e.g. `lambda c: make_workload(concurrency=c, ...)`).

    `progress(done, total)` is called after each point. Deterministic: the same inputs give the
    same points (each `simulate` run is)."""
    if by not in SWEEP_BY:
        raise LlmsimError(f"a sweep is over 'concurrency' or 'rate', got {by!r}")
    if not isinstance(loads, (list, tuple)) or not loads:
        raise LlmsimError(f"a sweep needs a non-empty list of levels, got {loads!r}", hint="e.g. [1, 4, 16, 64]")
    for v in loads:
        if not _valid_level(by, v):
            raise LlmsimError(f"sweep level {v!r} is not a valid {by}",
                              hint="concurrencies are integers >= 1, rates positive requests per second")
    _check_count(list(loads), "the sweep")
    if not callable(workload):
        raise LlmsimError("workload must be a function of the level that returns a Workload",
                          hint="e.g. lambda c: make_workload(concurrency=c, num_requests=10 * c, isl=1024, osl=128)")
    if not (is_number(attainment_target) and 0 < attainment_target <= 1):
        raise LlmsimError(f"attainment_target must be in (0, 1], got {attainment_target!r}", hint="e.g. 0.9: 90% of requests meet both SLOs")
    t0 = time.perf_counter()
    points = []
    for i, v in enumerate(sorted(loads)):
        wl = workload(v)
        if not isinstance(wl, Workload):
            raise LlmsimError(f"workload({v!r}) returned {type(wl).__name__}, not a Workload", hint="build it with make_workload(...)")
        points.append(SweepPoint(v, simulate(dep, wl, slo=slo, streaming=streaming)))
        if progress is not None:
            progress(i + 1, len(loads))
    return SweepResult(by, points, slo, float(attainment_target), time.perf_counter() - t0)
