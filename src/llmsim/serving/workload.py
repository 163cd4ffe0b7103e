"""Workloads for the serving simulator: who sends which request when.

A `Workload` is a handful of numpy arrays (never one Python object per request,
except the optional per-request prefix-hash arrays), so a million requests cost a
few tens of MB and build in well under a second.

Two loop kinds
--------------
* open loop / trace replay: ``arrival_s`` holds a sorted arrival time per request;
  requests arrive whether or not earlier ones have finished.
* closed loop: ``arrival_s is None`` and ``concurrency = N``: N clients each send
  their next request as soon as their previous one completes (request i goes to
  whichever client frees up first; clients start together at t = 0). An offline
  benchmark ("all requests at once") is ``concurrency == num_requests``. A
  concurrency above the number of requests simply means all requests start at once.

Synthetic arrivals
------------------
`poisson_arrivals` / `gamma_arrivals` put the first request at ``start_s`` and draw
the n-1 gaps after it: exponential gaps with mean 1/rate (Poisson), or Gamma gaps
with mean 1/rate and coefficient of variation ``cv`` (shape 1/cv**2; cv = 1 is
Poisson, cv > 1 bursty, cv < 1 smoother than Poisson), as in vLLM's
``--burstiness`` (= 1/cv**2).

Length distributions (`parse_length_dist`)
-----------------------------------------
``fixed:N`` or ``N``; ``uniform:LO,HI`` (integers, both inclusive);
``normal:MEAN,STD``; ``lognormal:MEAN,STD`` where MEAN and STD are the mean and
standard deviation of the *lengths themselves* (not of their logarithm: the
underlying normal has sigma**2 = ln(1 + STD**2/MEAN**2), mu = ln(MEAN) - sigma**2/2);
``trace:PATH[:input|output]`` resamples, with replacement, the input or output
lengths of a trace file (any format `load_trace` reads). Samples are rounded to
integers and clipped to [1, max_len].

Trace files (`load_trace`)
--------------------------
* ``azure``: Azure LLM inference trace CSV with header
  ``TIMESTAMP,ContextTokens,GeneratedTokens`` (timestamps like
  ``2023-11-16 18:15:46.6805900``); arrival = seconds since the first request.
* ``mooncake``: Mooncake JSONL, one object per line with ``timestamp`` (ms),
  ``input_length``, ``output_length`` and ``hash_ids`` (ids of 512-token prefix
  blocks); arrival = timestamp / 1000.
* llmsim's own CSV (``fmt="csv"``)::

      arrival_s,input_tokens,output_tokens,prefix_hash_ids
      0.000,1024,128,1 2 3
      0.125,2048,256,1 2 4 5
      0.250,512,64,

  ``arrival_s`` in seconds (float), token counts as integers, and the optional
  ``prefix_hash_ids`` column: space-separated integer ids of the request's
  consecutive prompt blocks of ``hash_block_tokens`` (default 512) tokens; two
  requests share a cached prefix exactly as far as their id lists agree. Empty
  means no sharing information for that request. Other columns are ignored.
* llmsim's own JSONL (``fmt="jsonl"``), one object per line::

      {"arrival_s": 0.0, "input_tokens": 1024, "output_tokens": 128, "hash_ids": [1, 2]}

  ``hash_ids`` is optional, with the same meaning as ``prefix_hash_ids``.

``fmt="auto"`` picks by extension (``.csv`` / ``.jsonl``, ``.json``, ``.ndjson``;
otherwise by the first character) and then by the header or the first object's keys.
Rows out of time order are stably sorted by arrival. Rows with a zero token count
and, if ``max_len`` is given, rows with input + output > max_len are dropped; the
counts are reported in `Workload.name`. A malformed row (missing column or key, a
token count that is not a non-negative integer, a non-finite time, bad JSON) raises
`LlmsimError` naming the file and its 1-based line number. Arrival times of the
Mooncake and llmsim formats are offsets from the start of the trace: a negative one is
such an error (it would queue a request from before t = 0), and so is an arrival more
than a year (`MAX_TRACE_SPAN_S`) after t = 0 -- or, for Azure's absolute date-times,
after the first request -- which is a unit mistake (milliseconds read as seconds, epoch
times), not a trace.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import MAX_SETTING_S, is_int, is_number
from ..errors import LlmsimError

__all__ = [
    "DEFAULT_MAX_LEN",
    "TRACE_FORMATS",
    "LengthDist",
    "Workload",
    "gamma_arrivals",
    "load_trace",
    "make_workload",
    "parse_length_dist",
    "poisson_arrivals",
]

MAX_LENGTH_TOKENS = 1 << 30  # a token count beyond this is a typo or a corrupt row, not a prompt
DEFAULT_MAX_LEN = MAX_LENGTH_TOKENS
# requests one workload may hold: request ids fit 32 bits (`engine.MAX_REQUESTS`)
MAX_WORKLOAD_REQUESTS = 1 << 32
TRACE_FORMATS = ("auto", "azure", "mooncake", "csv", "jsonl")

_AZURE_COLS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_OWN_CSV_COLS = ("arrival_s", "input_tokens", "output_tokens")
_OWN_CSV_HASH = "prefix_hash_ids"
_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
_OWN_JSON_KEYS = ("arrival_s", "input_tokens", "output_tokens")

# Arrival times are offsets from the start of the trace (Azure: re-based to its first request); one
# beyond a year is a unit mistake (milliseconds or nanoseconds read as seconds, epoch time), not a trace
MAX_TRACE_SPAN_S = 365 * 86400.0

_FORMAT_HINT = (
    "llmsim reads: Azure CSV (TIMESTAMP,ContextTokens,GeneratedTokens), Mooncake JSONL "
    "(timestamp,input_length,output_length,hash_ids), llmsim CSV "
    "(arrival_s,input_tokens,output_tokens[,prefix_hash_ids]) and llmsim JSONL "
    "(arrival_s,input_tokens,output_tokens[,hash_ids]); see llmsim.serving.workload"
)


# --------------------------------------------------------------------------- Workload


def _as_lengths(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise LlmsimError(f"{what} must be a 1-D array, got shape {a.shape}")
    if a.dtype.kind in "iu":
        a = a.astype(np.int64, copy=False)
    elif a.dtype.kind == "f":
        if a.size and not (np.all(np.isfinite(a)) and np.all(a == np.rint(a))):
            raise LlmsimError(f"{what} must hold whole token counts")
        a = a.astype(np.int64)
    elif a.dtype.kind == "b" or a.size:
        raise LlmsimError(f"{what} must be an integer array, got dtype {a.dtype}")
    else:
        a = a.astype(np.int64)
    if a.size:
        bad = np.flatnonzero(a < 1)
        if bad.size:
            i = int(bad[0])
            raise LlmsimError(
                f"{what} must be >= 1 token: request {i} has {int(a[i])} ({bad.size} such requests)"
            )
    return np.ascontiguousarray(a)


@dataclass
class Workload:
    """Requests to serve, as parallel numpy arrays (see the module docstring).

    ``input_len`` / ``output_len``: int64 tokens per request (>= 1).
    ``arrival_s``: sorted, finite float64 arrival times (open loop or trace), or None
    for a closed loop of ``concurrency`` clients (exactly one of the two is set).
    ``hash_ids``: per request an int64 array of prefix-block ids (each block is
    ``hash_block_tokens`` tokens), or None when there is no prefix-sharing information.
    ``warmup``: the first ``warmup`` requests to *complete* are left out of metrics.
    ``send_delay_s``: closed loop only, optional: request i is sent ``send_delay_s[i]``
    seconds after its client is free (t = 0 for the first round, else its previous
    request's completion) -- client / network turnaround, which keeps real clients from
    running in lock-step.
    """

    input_len: np.ndarray
    output_len: np.ndarray
    arrival_s: np.ndarray | None
    concurrency: int | None = None
    hash_ids: list[np.ndarray] | None = None
    hash_block_tokens: int = 512
    warmup: int = 0
    name: str = ""
    send_delay_s: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.input_len = _as_lengths(self.input_len, "input_len")
        self.output_len = _as_lengths(self.output_len, "output_len")
        n = self.input_len.size
        if n == 0:
            raise LlmsimError("a workload needs at least one request", hint="check num_requests or the trace file")
        if self.output_len.size != n:
            raise LlmsimError(
                f"input_len and output_len must have the same length, got {n} and {self.output_len.size}"
            )
        if (self.arrival_s is None) == (self.concurrency is None):
            raise LlmsimError(
                "a workload needs exactly one of arrival times (open loop / trace) or a concurrency (closed loop)",
                hint="give arrival_s, or arrival_s=None with concurrency=N",
            )
        if self.arrival_s is not None:
            a = np.asarray(self.arrival_s, dtype=np.float64)
            if a.ndim != 1 or a.size != n:
                raise LlmsimError(f"arrival_s must be a 1-D array of {n} times, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                i = int(np.flatnonzero(~np.isfinite(a))[0])
                raise LlmsimError(f"arrival_s must be finite: request {i} arrives at {a[i]}")
            if n and float(a.min()) < 0:
                i = int(np.argmin(a))
                raise LlmsimError(f"arrival_s must be >= 0 (seconds from the start; the engines start at 0): request {i} arrives at {a[i]}",
                                  hint="shift the times so that the first request arrives at 0 (arrival_s - arrival_s.min())")
            if n > 1:
                d = np.diff(a)
                if np.any(d < 0):
                    i = int(np.flatnonzero(d < 0)[0])
                    raise LlmsimError(
                        f"arrival_s must be sorted: request {i + 1} ({a[i + 1]} s) arrives before request {i} ({a[i]} s)",
                        hint="sort the requests by arrival time (np.argsort(..., kind='stable'))",
                    )
            self.arrival_s = np.ascontiguousarray(a)
        else:
            if self.concurrency is None or not is_int(self.concurrency) or self.concurrency < 1:
                raise LlmsimError(f"concurrency must be an integer >= 1, got {self.concurrency!r}")
            self.concurrency = int(self.concurrency)
        if self.hash_ids is not None:
            if not isinstance(self.hash_ids, (list, tuple)) or len(self.hash_ids) != n:
                got = f"{len(self.hash_ids)} for {n} requests" if isinstance(self.hash_ids, (list, tuple)) else repr(self.hash_ids)[:60]
                raise LlmsimError(f"hash_ids must be a list of one 1-D integer array per request: got {got}",
                                  hint="e.g. hash_ids=[np.array([1, 2]), np.array([1, 3])], or None without prefix caching")
            ids = []
            for i, h in enumerate(self.hash_ids):
                a = np.asarray(h) if h is not None else None
                if a is None or a.ndim != 1 or not (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
                    raise LlmsimError(f"hash_ids[{i}] must be a 1-D array of integers (the request's prefix block hashes), got {h!r}"[:200],
                                      hint="one integer per hash block of the prompt; an empty array for no shared prefix")
                ids.append(a.astype(np.int64, copy=False))
            self.hash_ids = ids
        if not is_int(self.hash_block_tokens) or self.hash_block_tokens < 1:
            raise LlmsimError(f"hash_block_tokens must be an integer >= 1, got {self.hash_block_tokens!r}")
        if not is_int(self.warmup) or self.warmup < 0:
            raise LlmsimError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if self.warmup >= n:
            raise LlmsimError(
                f"warmup ({self.warmup}) must be smaller than the number of requests ({n})",
                hint="lower warmup or send more requests",
            )
        self.warmup = int(self.warmup)
        if self.send_delay_s is not None:
            if self.concurrency is None:
                raise LlmsimError("send_delay_s applies to a closed loop (concurrency) only")
            d = np.asarray(self.send_delay_s, dtype=np.float64)
            if d.ndim != 1 or d.size != n or not np.all(np.isfinite(d)) or np.any(d < 0):
                raise LlmsimError(f"send_delay_s must be {n} finite delays >= 0 (one per request)")
            self.send_delay_s = np.ascontiguousarray(d)

    def __len__(self) -> int:
        return int(self.input_len.size)

    @property
    def closed_loop(self) -> bool:
        return self.arrival_s is None

    def describe(self) -> dict:
        """Plain-number summary for reports (json-serialisable)."""
        n = len(self)
        d: dict[str, Any] = {
            "name": self.name,
            "num_requests": n,
            "warmup": self.warmup,
            "mean_input_tokens": float(self.input_len.mean()),
            "mean_output_tokens": float(self.output_len.mean()),
            "max_input_tokens": int(self.input_len.max()),
            "max_output_tokens": int(self.output_len.max()),
            "concurrency": self.concurrency,
            "prefix_hash_ids": self.hash_ids is not None,
        }
        if self.arrival_s is not None:
            span = float(self.arrival_s[-1] - self.arrival_s[0])
            d["arrival_span_s"] = span
            d["mean_rate_per_s"] = (n - 1) / span if span > 0 else None
        return d


# --------------------------------------------------------------------------- arrivals


def _check_n(n: Any) -> int:
    if not is_int(n) or n < 1:
        raise LlmsimError(f"the number of requests must be an integer >= 1, got {n!r}")
    if n > MAX_WORKLOAD_REQUESTS:
        raise LlmsimError(f"{n:,} requests are more than one simulation handles ({MAX_WORKLOAD_REQUESTS:,})",
                          hint="simulate fewer requests: a million already gives stable percentiles")
    return int(n)


def _check_pos(x: Any, what: str, hint: str | None = None) -> float:
    if not is_number(x):
        raise LlmsimError(f"{what} must be a number, got {x!r}", hint=hint)
    v = float(x)
    if not (math.isfinite(v) and v > 0):
        raise LlmsimError(f"{what} must be a finite number > 0, got {x!r}", hint=hint)
    return v


# Gamma arrivals' coefficient of variation: 0.01 (nearly evenly spaced) to 100 (one burst after
# another); beyond, the Gamma shape 1/cv^2 leaves float range (and no benchmark runs it)
CV_RANGE = (0.01, 100.0)


def _check_cv(cv: Any) -> float:
    hint = f"cv = 1 is Poisson, > 1 bursty, < 1 regular; between {CV_RANGE[0]:g} and {CV_RANGE[1]:g}"
    v = _check_pos(cv, "arrival cv", hint=hint)
    if not CV_RANGE[0] <= v <= CV_RANGE[1]:
        raise LlmsimError(f"arrival cv must be between {CV_RANGE[0]:g} and {CV_RANGE[1]:g}, got {cv!r}", hint=hint)
    return v


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if not is_int(seed) or seed < 0:
        raise LlmsimError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.Generator(np.random.PCG64(int(seed)))


def _sub_rng(seed: int, stream: int) -> np.random.Generator:
    """An independent, reproducible stream for one purpose (lengths, resampling...)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), stream])))


def _cumulate(gaps: np.ndarray, start_s: float, rate: float) -> np.ndarray:
    out = np.empty(gaps.size + 1, dtype=np.float64)
    out[0] = 0.0
    with np.errstate(over="ignore"):  # an infinite span is refused just below
        np.cumsum(gaps, out=out[1:])
    out += start_s
    # the simulator's clock is a float64 of seconds: past a year it would still resolve
    # microseconds, but arrivals spread that thin are a mistyped rate, not a benchmark
    if not out[-1] <= MAX_TRACE_SPAN_S:
        raise LlmsimError(f"{out.size:,} arrivals at {rate:g} requests/s span {out[-1]:.3g} s, more than a year "
                          f"({MAX_TRACE_SPAN_S:.3g} s)", hint="raise the rate (requests per second) or simulate fewer requests")
    return out


def poisson_arrivals(rate_per_s: float, n: int, seed: int, start_s: float = 0.0) -> np.ndarray:
    """n sorted arrival times of a Poisson process of `rate_per_s`; the first is at `start_s`."""
    rate = _check_pos(rate_per_s, "request rate", hint="give a rate in requests per second, e.g. 10")
    n = _check_n(n)
    start = float(start_s)
    if not math.isfinite(start):
        raise LlmsimError(f"start_s must be finite, got {start_s!r}")
    rng = _rng(seed)
    return _cumulate(rng.exponential(1.0 / rate, n - 1), start, rate)


def gamma_arrivals(rate_per_s: float, cv: float, n: int, seed: int, start_s: float = 0.0) -> np.ndarray:
    """n sorted arrival times with Gamma gaps of mean 1/rate and coefficient of variation `cv`.

    cv = 1 is exactly `poisson_arrivals` (same seed, same times); cv > 1 is bursty.
    """
    rate = _check_pos(rate_per_s, "request rate", hint="give a rate in requests per second, e.g. 10")
    cv = _check_cv(cv)
    n = _check_n(n)
    if cv == 1.0:
        return poisson_arrivals(rate, n, seed, start_s)
    start = float(start_s)
    if not math.isfinite(start):
        raise LlmsimError(f"start_s must be finite, got {start_s!r}")
    shape = 1.0 / (cv * cv)
    scale = 1.0 / (rate * shape)
    rng = _rng(seed)
    return _cumulate(rng.gamma(shape, scale, n - 1), start, rate)


# --------------------------------------------------------------------------- length distributions

_DIST_HINT = (
    "accepted forms: fixed:N (or just N), uniform:LO,HI (inclusive), normal:MEAN,STD, "
    "lognormal:MEAN,STD (mean and std of the lengths), trace:PATH[:input|output]"
)


@dataclass(frozen=True)
class LengthDist:
    """A distribution of token counts; `sample` gives int64 values clipped to [1, max_len].

    kind: "fixed" (a = N), "uniform" (a = LO, b = HI, inclusive), "normal" / "lognormal"
    (a = mean, b = std of the lengths), "trace" (resample `values` with replacement).
    """

    kind: str
    a: float = 0.0
    b: float = 0.0
    max_len: int = DEFAULT_MAX_LEN
    values: np.ndarray | None = field(default=None, repr=False, compare=False)
    spec: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "uniform", "normal", "lognormal", "trace"):
            raise LlmsimError(f"unknown length distribution kind {self.kind!r}", hint=_DIST_HINT)
        if not is_int(self.max_len) or self.max_len < 1:
            raise LlmsimError(f"max_len must be an integer >= 1, got {self.max_len!r}")
        if self.kind == "trace" and (self.values is None or np.asarray(self.values).size == 0):
            raise LlmsimError("a trace length distribution needs at least one length")
        if self.values is not None and not isinstance(self.values, np.ndarray):  # a list or tuple of lengths
            object.__setattr__(self, "values", np.asarray(self.values))

    def with_max_len(self, max_len: int | None) -> LengthDist:
        """The same distribution clipped to min(current cap, max_len)."""
        if max_len is None:
            return self
        return replace(self, max_len=min(self.max_len, int(max_len)))

    @property
    def mean(self) -> float:
        """Mean of the distribution before rounding and clipping."""
        if self.kind == "fixed":
            return float(self.a)
        if self.kind == "uniform":
            return (self.a + self.b) / 2.0
        if self.kind in ("normal", "lognormal"):
            return float(self.a)
        assert self.values is not None  # a trace distribution has values (__post_init__)
        return float(np.mean(self.values))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.clip(self.draw(n, rng), 1, self.max_len).astype(np.int64, copy=False)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` whole-token draws before clipping to [1, max_len] (`sample` clips them)."""
        n = int(n)
        if n < 0:
            raise LlmsimError(f"cannot draw {n} samples")
        k = self.kind
        if k == "fixed":
            x = np.full(n, int(self.a), dtype=np.int64)
        elif k == "uniform":
            x = rng.integers(int(self.a), int(self.b), size=n, endpoint=True, dtype=np.int64)
        elif k == "normal":
            x = np.rint(rng.normal(self.a, self.b, n))
        elif k == "lognormal":
            mean, std = self.a, self.b
            s2 = math.log1p((std / mean) ** 2)
            mu = math.log(mean) - s2 / 2.0
            x = np.rint(rng.lognormal(mu, math.sqrt(s2), n))
        else:
            vals = self.values
            assert vals is not None  # a trace distribution has values (__post_init__)
            x = vals[rng.integers(0, vals.size, size=n)]
        return x

    def __str__(self) -> str:
        return self.spec or f"{self.kind}:{self.a:g},{self.b:g}"




def _num(s: str, spec: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise LlmsimError(f"bad length distribution {spec!r}: {s.strip()!r} is not a number", hint=_DIST_HINT) from None
    if not math.isfinite(v):
        raise LlmsimError(f"bad length distribution {spec!r}: {s.strip()!r} is not finite", hint=_DIST_HINT)
    if abs(v) > MAX_LENGTH_TOKENS:
        raise LlmsimError(f"bad length distribution {spec!r}: {s.strip()!r} tokens is more than any model's context",
                          hint=f"lengths are token counts up to {MAX_LENGTH_TOKENS:,}")
    return v


def _whole(s: str, spec: str) -> int:
    v = _num(s, spec)
    if v != int(v):
        raise LlmsimError(f"bad length distribution {spec!r}: {s.strip()!r} is not a whole number", hint=_DIST_HINT)
    return int(v)


def _split_trace_column(rest: str, column: str) -> tuple[str, str]:
    """(path, column) of the part after ``trace:`` in a length spec; `column` if it names none."""
    for c in ("input", "output"):
        if rest.lower().endswith(":" + c):
            return rest[: -len(c) - 1], c
    return rest, column


def length_dist_trace_path(spec: object) -> str | None:
    """The trace file a ``trace:PATH[:input|output]`` length spec reads (None for other specs)."""
    if not isinstance(spec, str):
        return None
    kind, sep, rest = spec.strip().partition(":")
    return _split_trace_column(rest, "input")[0].strip() if sep and kind.strip().lower() == "trace" else None


def parse_length_dist(spec: str | LengthDist, *, max_len: int | None = None, column: str = "input") -> LengthDist:
    """Parse a length-distribution spec (see the module docstring).

    `column` is the trace column used when a ``trace:PATH`` spec names none
    (make_workload passes "output" for the output distribution). `max_len` caps samples.
    """
    if isinstance(spec, LengthDist):
        return spec.with_max_len(max_len)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        spec = str(int(spec))
    if not isinstance(spec, str) or not spec.strip():
        raise LlmsimError(f"bad length distribution {spec!r}", hint=_DIST_HINT)
    cap = DEFAULT_MAX_LEN if max_len is None else int(max_len)
    if cap < 1:
        raise LlmsimError(f"max_len must be >= 1, got {max_len!r}")
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    kind_l = kind.strip().lower()
    if not sep:
        # a plain number is a fixed length
        n = _whole(text, spec)
        kind_l, rest = "fixed", str(n)
    if kind_l == "trace":
        path, col = _split_trace_column(rest, column)
        if col not in ("input", "output"):
            raise LlmsimError(f"trace length column must be 'input' or 'output', got {col!r}")
        if not path.strip():
            raise LlmsimError(f"bad length distribution {spec!r}: no trace path", hint=_DIST_HINT)
        head, colon, tail = path.strip().rpartition(":")
        if colon and not Path(path.strip()).exists() and Path(head).exists():  # trace:FILE:COLUMN with a bad column
            raise LlmsimError(f"bad length distribution {spec!r}: trace length column must be 'input' or 'output', got {tail!r}",
                              hint=_DIST_HINT)
        w = load_trace(path.strip())
        vals = w.input_len if col == "input" else w.output_len
        return LengthDist("trace", max_len=cap, values=vals, spec=f"trace:{Path(path.strip()).name}:{col}")
    args = [p for p in rest.split(",")]
    if kind_l == "fixed":
        if len(args) != 1:
            raise LlmsimError(f"bad length distribution {spec!r}: fixed takes one value", hint=_DIST_HINT)
        n = _whole(args[0], spec)
        if n < 1:
            raise LlmsimError(f"bad length distribution {spec!r}: the length must be >= 1", hint=_DIST_HINT)
        return LengthDist("fixed", a=n, max_len=cap, spec=f"fixed:{n}")
    if kind_l == "uniform":
        if len(args) != 2:
            raise LlmsimError(f"bad length distribution {spec!r}: uniform takes LO,HI", hint=_DIST_HINT)
        lo, hi = _whole(args[0], spec), _whole(args[1], spec)
        if not 1 <= lo <= hi:
            raise LlmsimError(f"bad length distribution {spec!r}: need 1 <= LO <= HI", hint=_DIST_HINT)
        return LengthDist("uniform", a=lo, b=hi, max_len=cap, spec=f"uniform:{lo},{hi}")
    if kind_l in ("normal", "lognormal"):
        if len(args) != 2:
            raise LlmsimError(f"bad length distribution {spec!r}: {kind_l} takes MEAN,STD", hint=_DIST_HINT)
        mean, std = _num(args[0], spec), _num(args[1], spec)
        if mean <= 0 or std < 0:
            raise LlmsimError(f"bad length distribution {spec!r}: need MEAN > 0 and STD >= 0", hint=_DIST_HINT)
        return LengthDist(kind_l, a=mean, b=std, max_len=cap, spec=f"{kind_l}:{mean:g},{std:g}")
    raise LlmsimError(f"bad length distribution {spec!r}: unknown kind {kind.strip()!r}", hint=_DIST_HINT)


# --------------------------------------------------------------------------- trace loading


class _Rows:
    """Columns read from a trace, before sorting / dropping: plain numpy arrays."""

    __slots__ = ("arrival", "hash_flat", "hash_len", "inp", "out")

    def __init__(self, arrival, inp, out, hash_flat=None, hash_len=None):
        self.arrival = np.asarray(arrival, dtype=np.float64)
        self.inp = np.asarray(inp, dtype=np.int64)
        self.out = np.asarray(out, dtype=np.int64)
        self.hash_flat = None if hash_flat is None else np.asarray(hash_flat, dtype=np.int64)
        self.hash_len = None if hash_len is None else np.asarray(hash_len, dtype=np.int64)


def _row_error(path: Path, line: int, what: str) -> LlmsimError:
    return LlmsimError(f"{path}: line {line}: {what}", hint=_FORMAT_HINT)


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            first = ""
            for line in f:
                if line.strip():
                    first = line.strip()
                    break
    except UnicodeDecodeError:
        raise LlmsimError(f"{path}: not a UTF-8 text file", hint=_FORMAT_HINT) from None
    if not first:
        raise LlmsimError(f"trace {path} is empty", hint=_FORMAT_HINT)
    if suffix in (".jsonl", ".json", ".ndjson") or (suffix != ".csv" and first.startswith("{")):
        try:
            obj = json.loads(first)
        except json.JSONDecodeError as e:
            raise LlmsimError(f"{path}: line 1: bad JSON ({e.msg})", hint=_FORMAT_HINT) from None
        if not isinstance(obj, dict):
            raise LlmsimError(f"{path}: line 1: expected a JSON object per line", hint=_FORMAT_HINT)
        if all(k in obj for k in _MOONCAKE_KEYS):
            return "mooncake"
        if all(k in obj for k in _OWN_JSON_KEYS):
            return "jsonl"
        for name, keys in (("a Mooncake", _MOONCAKE_KEYS), ("an llmsim", _OWN_JSON_KEYS)):
            if any(k in obj for k in keys):
                missing = ", ".join(k for k in keys if k not in obj)
                raise LlmsimError(f"{path}: line 1: the keys {sorted(obj)} look like {name} JSONL trace but lack {missing}",
                                  hint=_FORMAT_HINT)
        raise LlmsimError(
            f"{path}: cannot tell the JSONL trace format from the keys {sorted(obj)}", hint=_FORMAT_HINT
        )
    header = [h.strip() for h in next(csv.reader([first]))]
    if all(c in header for c in _AZURE_COLS):
        return "azure"
    if all(c in header for c in _OWN_CSV_COLS):
        return "csv"
    for name, cols in (("an Azure", _AZURE_COLS), ("an llmsim", _OWN_CSV_COLS)):
        if any(c in header for c in cols):  # the format it was meant to be: say what is missing
            missing = ", ".join(c for c in cols if c not in header)
            raise LlmsimError(f"{path}: line 1: the header {header} looks like {name} CSV trace but lacks column(s) {missing}",
                              hint=_FORMAT_HINT)
    raise LlmsimError(f"{path}: cannot tell the CSV trace format from the header {header}", hint=_FORMAT_HINT)


# ---- slow, exact parsers: used when the fast reader or the vectorised checks fail, to
#      name the offending line (or to read files pyarrow is pickier about than we are).


def _tok(path: Path, line: int, raw: Any, what: str) -> int:
    if isinstance(raw, bool):
        raise _row_error(path, line, f"{what} must be an integer, got {raw!r}")
    if isinstance(raw, int):
        v = raw
    elif isinstance(raw, float):
        if not (math.isfinite(raw) and raw == int(raw)):
            raise _row_error(path, line, f"{what} must be an integer, got {raw!r}")
        v = int(raw)
    elif isinstance(raw, str):
        s = raw.strip()
        if not s:
            raise _row_error(path, line, f"{what} is empty")
        try:
            v = int(s)
        except ValueError:
            try:
                f = float(s)
            except ValueError:
                f = math.nan
            if not (math.isfinite(f) and f == int(f)):
                raise _row_error(path, line, f"{what} must be an integer, got {s!r}") from None
            v = int(f)
    elif raw is None:
        raise _row_error(path, line, f"{what} is missing (null)")
    else:
        raise _row_error(path, line, f"{what} must be an integer, got {raw!r}")
    if v < 0:
        raise _row_error(path, line, f"{what} must be >= 0, got {v}")
    if v > MAX_LENGTH_TOKENS:
        raise _row_error(path, line, f"{what} is {v:,} tokens, more than any model's context ({MAX_LENGTH_TOKENS:,})")
    return v


def _time(path: Path, line: int, raw: Any, what: str) -> float:
    if isinstance(raw, bool) or raw is None:
        raise _row_error(path, line, f"{what} must be a number, got {raw!r}")
    try:
        v = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise _row_error(path, line, f"{what} must be a number, got {raw!r}") from None
    if not math.isfinite(v):
        raise _row_error(path, line, f"{what} must be finite, got {raw!r}")
    return v


# per trace format: (unit of its time field, units per second, hint for a time beyond MAX_TRACE_SPAN_S)
_TIME_UNITS = {
    "csv": ("s", 1.0, "arrival_s is in seconds from the start of the trace: divide milliseconds by 1000, and re-base "
                      "absolute (epoch) times to the first request"),
    "jsonl": ("s", 1.0, "arrival_s is in seconds from the start of the trace: divide milliseconds by 1000, and re-base "
                        "absolute (epoch) times to the first request"),
    "mooncake": ("ms", 1000.0, "Mooncake timestamps are milliseconds from the start of the trace: re-base absolute (epoch) "
                             "times to the first request"),
}


def _arrival(path: Path, line: int, raw: Any, what: str, fmt: str) -> float:
    """A request's arrival in seconds from an offset-from-start time field (llmsim CSV / JSONL:
    seconds; Mooncake: ms): finite, >= 0 and at most `MAX_TRACE_SPAN_S`, else LlmsimError naming
    the file and line."""
    unit, per_s, hint = _TIME_UNITS[fmt]
    v = _time(path, line, raw, what)
    if v < 0:
        raise LlmsimError(f"{path}: line {line}: {what} must be >= 0 ({'seconds' if unit == 's' else 'milliseconds'} from the "
                          f"start of the trace), got {raw!r}",
                          hint="arrival times are offsets from the trace start: shift the trace so that it starts at 0")
    t = v / per_s if per_s != 1.0 else v
    if t > MAX_TRACE_SPAN_S:
        raise LlmsimError(f"{path}: line {line}: {what} {raw!r} is {t:.3g} s after the start of the trace, more than a year "
                          f"({MAX_TRACE_SPAN_S:.3g} s)", hint=hint)
    return t


_AZURE_TS = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d)?)(\.\d+)?\s*(Z|[+-]\d\d:?\d\d)?")
_EPOCH = datetime(1970, 1, 1)


def _azure_time(path: Path, line: int, raw: str) -> float:
    """Seconds since 1970 of an Azure TIMESTAMP (any number of fractional digits)."""
    s = raw.strip()
    m = _AZURE_TS.fullmatch(s)
    try:
        if m is None:
            raise ValueError(s)
        t = datetime.fromisoformat(m.group(1))
        base = (t - _EPOCH).total_seconds()
        tz = m.group(3)
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            hh, mm = int(tz[1:3]), int(tz[-2:])
            base -= sign * (hh * 3600 + mm * 60)
        if m.group(2):
            base += float("0" + m.group(2))
        return base
    except ValueError:
        raise _row_error(path, line, f"TIMESTAMP {s!r} is not a date-time like 2023-11-16 18:15:46.680") from None


def _hash_list(path: Path, line: int, raw: Any, what: str) -> list[int]:
    if raw is None:
        return []
    if isinstance(raw, str):
        parts = raw.split()
    elif isinstance(raw, list):
        parts = raw
    else:
        raise _row_error(path, line, f"{what} must be a list of integers, got {raw!r}")
    out = []
    for p in parts:
        if isinstance(p, bool) or isinstance(p, float):  # 1.7 is not a block id (int() would truncate it)
            raise _row_error(path, line, f"{what} must hold integers, got {p!r}")
        try:
            v = p if isinstance(p, int) else int(p)
        except (TypeError, ValueError):
            raise _row_error(path, line, f"{what} must hold integers, got {p!r}") from None
        if not -(1 << 63) <= v < (1 << 63):
            raise _row_error(path, line, f"{what} must hold 64-bit integers, got {p!r}")
        out.append(v)
    return out


def _slow_csv(path: Path, fmt: str) -> _Rows:
    arr: list[float] = []
    inp: list[int] = []
    out: list[int] = []
    hflat: list[int] = []
    hlen: list[int] = []
    lines: list[int] = []
    with open(path, "r", encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = None
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = [h.strip() for h in row]
                twice = sorted({h for h in header if h and header.count(h) > 1})
                if twice:
                    raise _row_error(path, reader.line_num, f"column(s) {', '.join(twice)} appear more than once in the header")
                need = _AZURE_COLS if fmt == "azure" else _OWN_CSV_COLS
                missing = [c for c in need if c not in header]
                if missing:
                    raise _row_error(path, reader.line_num, f"header lacks column(s) {', '.join(missing)}")
                idx = [header.index(c) for c in need]
                hidx = header.index(_OWN_CSV_HASH) if fmt == "csv" and _OWN_CSV_HASH in header else None
                width = len(header)
                continue
            ln = reader.line_num
            if len(row) != width:
                raise _row_error(path, ln, f"expected {width} columns, got {len(row)}")
            if fmt == "azure":
                arr.append(_azure_time(path, ln, row[idx[0]]))
                lines.append(ln)
                inp.append(_tok(path, ln, row[idx[1]], "ContextTokens"))
                out.append(_tok(path, ln, row[idx[2]], "GeneratedTokens"))
            else:
                arr.append(_arrival(path, ln, row[idx[0]], "arrival_s", fmt))
                inp.append(_tok(path, ln, row[idx[1]], "input_tokens"))
                out.append(_tok(path, ln, row[idx[2]], "output_tokens"))
                if hidx is not None:
                    h = _hash_list(path, ln, row[hidx], _OWN_CSV_HASH)
                    hflat.extend(h)
                    hlen.append(len(h))
    has_hash = fmt == "csv" and header is not None and _OWN_CSV_HASH in header
    if fmt == "azure" and arr:
        # absolute wall-clock times: re-based to the first request
        t0 = min(arr)
        arr = [t - t0 for t in arr]
        i0 = arr.index(0.0)
        for t, ln in zip(arr, lines):
            if t > MAX_TRACE_SPAN_S:
                raise LlmsimError(f"{path}: line {ln}: TIMESTAMP is {t:.3g} s after the first request (line {lines[i0]}), "
                                  f"more than a year ({MAX_TRACE_SPAN_S:.3g} s)",
                                  hint="an Azure trace spans hours or days: look for a mistyped or corrupt date")
    return _Rows(arr, inp, out, hflat if has_hash else None, hlen if has_hash else None)


def _slow_jsonl(path: Path, fmt: str) -> _Rows:
    keys = _MOONCAKE_KEYS if fmt == "mooncake" else _OWN_JSON_KEYS
    hkey = "hash_ids"
    arr: list[float] = []
    inp: list[int] = []
    out: list[int] = []
    hflat: list[int] = []
    hlen: list[int] = []
    any_hash = False
    with open(path, "r", encoding="utf-8-sig") as f:
        for ln, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                continue
            try:
                obj = json.loads(s)
            except json.JSONDecodeError as e:
                raise _row_error(path, ln, f"bad JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise _row_error(path, ln, "expected a JSON object")
            for k in keys:
                if k not in obj:
                    raise _row_error(path, ln, f"missing key {k!r}")
            arr.append(_arrival(path, ln, obj[keys[0]], keys[0], fmt))
            inp.append(_tok(path, ln, obj[keys[1]], keys[1]))
            out.append(_tok(path, ln, obj[keys[2]], keys[2]))
            h = obj.get(hkey)
            if h is not None:
                any_hash = True
            h = _hash_list(path, ln, h, hkey)
            hflat.extend(h)
            hlen.append(len(h))
    return _Rows(arr, inp, out, hflat if any_hash else None, hlen if any_hash else None)


# ---- fast readers (pyarrow), validated vectorised


def _split_lists(list_arr) -> tuple[np.ndarray, np.ndarray]:
    """(flat int64 values, per-row lengths) of a pyarrow list array; null rows are empty."""
    import pyarrow as pa

    if isinstance(list_arr, pa.ChunkedArray):
        list_arr = list_arr.combine_chunks() if list_arr.num_chunks else pa.nulls(0, list_arr.type)
    offsets = _np(list_arr.offsets).astype(np.int64)
    lengths = np.diff(offsets)
    values = list_arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    if list_arr.null_count and int(lengths[~_np_valid(list_arr)].sum()):
        # null rows that still span values (legal in Arrow, never made by our readers)
        lengths = lengths * _np_valid(list_arr)
        values = list_arr.flatten()
    if values.null_count:
        raise ValueError("null hash id")
    flat = _np(values.cast(pa.int64())).astype(np.int64, copy=False)
    if flat.size != int(lengths.sum()):
        raise ValueError("inconsistent list array")
    return flat, lengths


def _np_valid(a) -> np.ndarray:
    """Validity of each slot of a pyarrow array, as a numpy bool array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return _np(pc.cast(pc.is_valid(a), pa.int8())).astype(bool)


_NP_OF_ARROW = {"int64": np.int64, "int32": np.int32, "int8": np.int8, "double": np.float64, "float": np.float32}


def _np_chunk(a) -> np.ndarray:
    dt = _NP_OF_ARROW.get(str(a.type))
    if dt is None or a.null_count:
        return a.to_numpy(zero_copy_only=False)
    item = np.dtype(dt).itemsize
    return np.frombuffer(a.buffers()[1], dtype=dt, count=len(a), offset=a.offset * item).copy()


def _np(chunked) -> np.ndarray:
    """numpy copy of a pyarrow (chunked) array.

    Fixed-width columns are read straight from the Arrow buffer: pyarrow's own
    to_numpy() imports pandas (when installed), which costs ~0.3 s on first use.
    """
    chunks = getattr(chunked, "chunks", None)
    if chunks is None:
        return _np_chunk(chunked)
    if len(chunks) == 1:
        return _np_chunk(chunks[0])
    if not chunks:
        return np.empty(0, dtype=_NP_OF_ARROW.get(str(chunked.type), np.float64))
    return np.concatenate([_np_chunk(c) for c in chunks])


def _col(table, name, dtype) -> np.ndarray:
    c = table.column(name)
    if c.null_count:
        raise ValueError(f"nulls in {name}")
    return _np(c).astype(dtype, copy=False)


def _fast_csv(path: Path, fmt: str) -> _Rows:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    with open(path, "r", encoding="utf-8-sig", newline="") as f:
        header = [h.strip() for h in next(csv.reader([f.readline()]))]
    if fmt == "azure":
        types = {"TIMESTAMP": pa.timestamp("ns"), "ContextTokens": pa.int64(), "GeneratedTokens": pa.int64()}
        include = list(_AZURE_COLS)
    else:
        types = {"arrival_s": pa.float64(), "input_tokens": pa.int64(), "output_tokens": pa.int64()}
        include = list(_OWN_CSV_COLS)
        if _OWN_CSV_HASH in header:
            types[_OWN_CSV_HASH] = pa.string()
            include.append(_OWN_CSV_HASH)
    if any(h not in header for h in include) or len(set(header)) != len(header):
        raise ValueError("header")
    table = pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=16 << 20),
        convert_options=pcsv.ConvertOptions(column_types=types, include_columns=include, strings_can_be_null=False),
    )
    if fmt == "azure":
        ts = table.column("TIMESTAMP")
        if ts.null_count:
            raise ValueError("null timestamp")
        t = _np(ts.cast(pa.int64())).astype(np.int64, copy=False)
        arrival = (t - t.min()).astype(np.float64) / 1e9 if t.size else t.astype(np.float64)
        inp = _col(table, "ContextTokens", np.int64)
        out = _col(table, "GeneratedTokens", np.int64)
        return _Rows(arrival, inp, out)
    arrival = _col(table, "arrival_s", np.float64)
    inp = _col(table, "input_tokens", np.int64)
    out = _col(table, "output_tokens", np.int64)
    hflat = hlen = None
    if _OWN_CSV_HASH in include:
        col = table.column(_OWN_CSV_HASH)
        s = pc.utf8_trim_whitespace(col.combine_chunks() if col.num_chunks else pa.nulls(0, pa.string()))
        # empty cells -> null -> empty lists (no pyarrow scalars: they make pyarrow import pandas)
        s = pc.if_else(pc.cast(pc.utf8_length(s), pa.bool_()), s, pa.nulls(len(s), pa.string()))
        hflat, hlen = _split_lists(pc.utf8_split_whitespace(s))
    return _Rows(arrival, inp, out, hflat, hlen)


def _fast_jsonl(path: Path, fmt: str) -> _Rows:
    import pyarrow as pa
    import pyarrow.json as pjson

    keys = _MOONCAKE_KEYS if fmt == "mooncake" else _OWN_JSON_KEYS
    schema = pa.schema(
        [
            (keys[0], pa.float64()),
            (keys[1], pa.int64()),
            (keys[2], pa.int64()),
            ("hash_ids", pa.list_(pa.int64())),
        ]
    )
    table = pjson.read_json(
        path,
        read_options=pjson.ReadOptions(block_size=16 << 20),
        parse_options=pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    arrival = _col(table, keys[0], np.float64)
    if fmt == "mooncake":
        arrival = arrival / 1000.0
    inp = _col(table, keys[1], np.int64)
    out = _col(table, keys[2], np.int64)
    h = table.column("hash_ids")
    hflat = hlen = None
    if h.null_count < len(h):
        hflat, hlen = _split_lists(h)
    return _Rows(arrival, inp, out, hflat, hlen)


def _read_rows(path: Path, fmt: str) -> _Rows:
    import pyarrow as pa

    fast = _fast_csv if fmt in ("azure", "csv") else _fast_jsonl
    slow = _slow_csv if fmt in ("azure", "csv") else _slow_jsonl
    try:
        rows = fast(path, fmt)
    except (pa.ArrowException, ValueError, KeyError, TypeError, StopIteration, OSError, UnicodeDecodeError):
        rows = None
    finally:
        # hand the parse buffers back to the OS (mimalloc keeps freed pages otherwise)
        release = getattr(pa.default_memory_pool(), "release_unused", None)
        if release is not None:
            release()
    if rows is not None and rows.inp.size:
        ok = (
            bool(np.all(np.isfinite(rows.arrival)))
            and float(rows.arrival.min()) >= 0  # offsets from the trace start (`_arrival`)
            and float(rows.arrival.max()) <= MAX_TRACE_SPAN_S
            and int(rows.inp.min()) >= 0
            and int(rows.out.min()) >= 0
            and int(rows.inp.max()) <= MAX_LENGTH_TOKENS
            and int(rows.out.max()) <= MAX_LENGTH_TOKENS
        )
        if ok:
            return rows
    # Either pyarrow refused the file or a value is invalid: re-read exactly, which
    # raises with the 1-based line number of the first bad row (or succeeds when
    # pyarrow was merely stricter than we are, or the file has no rows).
    return slow(path, fmt)


def load_trace(
    path: str | Path,
    fmt: str = "auto",
    max_len: int | None = None,
    time_scale: float = 1.0,
    limit: int | None = None,
    *,
    hash_block_tokens: int = 512,
) -> Workload:
    """Read a request trace into an open-loop `Workload` (formats: module docstring).

    Rows are stably sorted by arrival; rows with a zero token count, and with
    max_len given, rows with input + output > max_len are dropped (counts go into
    `Workload.name`); then the first `limit` rows are kept. `time_scale` multiplies
    every inter-arrival time (0.5 = replay twice as fast), keeping the first arrival.
    """
    p = Path(path)
    if not p.is_file():
        what = "is not a regular file" if p.exists() else "not found"
        raise LlmsimError(f"trace file {what}: {p}", hint="give the path of a CSV or JSONL trace")
    if fmt not in TRACE_FORMATS:
        raise LlmsimError(f"unknown trace format {fmt!r}", hint=f"use one of {', '.join(TRACE_FORMATS)}")
    scale = _check_pos(time_scale, "time_scale", hint="1 replays at recorded speed, 0.5 twice as fast")
    if limit is not None and (not is_int(limit) or limit < 1):
        raise LlmsimError(f"limit must be an integer >= 1, got {limit!r}")
    if max_len is not None and (not is_int(max_len) or max_len < 2):
        raise LlmsimError(f"max_len must be an integer >= 2, got {max_len!r}")
    if p.stat().st_size == 0:
        raise LlmsimError(f"trace {p} is empty", hint=_FORMAT_HINT)
    if fmt == "auto":
        fmt = _detect_format(p)

    rows = _read_rows(p, fmt)
    n_file = rows.inp.size
    if n_file == 0:
        raise LlmsimError(f"trace {p} has no requests", hint=_FORMAT_HINT)

    order = np.argsort(rows.arrival, kind="stable")
    resorted = bool(np.any(order != np.arange(n_file)))
    arrival, inp, out = rows.arrival[order], rows.inp[order], rows.out[order]

    zero = (inp == 0) | (out == 0)
    too_long = (inp + out > max_len) if max_len is not None else np.zeros(n_file, dtype=bool)
    too_long &= ~zero
    keep = ~(zero | too_long)
    kept_idx = np.flatnonzero(keep)
    if limit is not None and kept_idx.size > limit:
        end = int(kept_idx[limit - 1]) + 1  # rows considered: up to the last one kept
        kept_idx = kept_idx[:limit]
    else:
        end = n_file
    n_zero = int(zero[:end].sum())
    n_long = int(too_long[:end].sum())
    if kept_idx.size == 0:
        why = []
        if n_zero:
            why.append(f"{n_zero} with a zero token count")
        if n_long:
            why.append(f"{n_long} over max_len={max_len} tokens")
        raise LlmsimError(
            f"trace {p}: no requests left after dropping {' and '.join(why)}",
            hint="raise max_len" if n_long else None,
        )

    arrival = arrival[kept_idx]
    if scale != 1.0:
        arrival = arrival[0] + (arrival - arrival[0]) * scale
    inp, out = inp[kept_idx], out[kept_idx]

    hash_ids = None
    block = hash_block_tokens
    if rows.hash_flat is not None:
        offsets = np.zeros(n_file + 1, dtype=np.int64)
        np.cumsum(rows.hash_len, out=offsets[1:])
        src = order[kept_idx]
        starts, ends = offsets[src].tolist(), offsets[src + 1].tolist()
        flat = rows.hash_flat
        hash_ids = [flat[s:e] for s, e in zip(starts, ends)]
        if fmt == "mooncake":
            block = 512

    notes = [fmt, f"{kept_idx.size} request{'s' * (kept_idx.size != 1)}"]
    if limit is not None and kept_idx.size == limit and limit < n_file:
        notes.append(f"first {limit} of {n_file}")
    if n_long:
        notes.append(f"{n_long} request{'s' * (n_long != 1)} over {max_len} tokens dropped")
    if n_zero:
        notes.append(f"{n_zero} request{'s' * (n_zero != 1)} with zero tokens dropped")
    if resorted:
        notes.append("re-sorted by arrival")
    if scale != 1.0:
        notes.append(f"inter-arrival times x{scale:g}")
    return Workload(
        input_len=inp,
        output_len=out,
        arrival_s=arrival,
        hash_ids=hash_ids,
        hash_block_tokens=block,
        name=f"{p.name} ({', '.join(notes)})",
    )


# --------------------------------------------------------------------------- builder


def _check_len(x: Any, what: str) -> int:
    if not is_int(x) or x < 1:
        raise LlmsimError(f"{what} must be an integer >= 1 token, got {x!r}")
    if x > MAX_LENGTH_TOKENS:
        raise LlmsimError(f"{what} = {x:,} tokens is more than any model's context ({MAX_LENGTH_TOKENS:,})")
    return int(x)


# sampled lengths clipped to [1, max_len]: up to this share of requests is a tail cut off (said in
# the workload's name); beyond it the clipping, not the distribution asked for, shapes the lengths
MAX_CLIPPED_SHARE = 0.05


def _check_clipping(raw_in: np.ndarray, raw_out: np.ndarray, inp: np.ndarray, out: np.ndarray,
                    idist: LengthDist, odist: LengthDist, max_len: int | None) -> str:
    """The note for the workload's name on the requests whose sampled lengths were clipped, or
    an error when more than `MAX_CLIPPED_SHARE` of them were."""
    clipped = (raw_in != inp) | (raw_out != out)
    share = float(clipped.mean()) if clipped.size else 0.0
    if share == 0.0:
        return ""
    if share > MAX_CLIPPED_SHARE:
        sides = []
        for col, raw, got, dist in (("input", raw_in, inp, idist), ("output", raw_out, out, odist)):
            k = float((raw != got).mean())
            if k:
                low = float((raw < 1).mean())
                sides.append(f"{col} {dist}: {k:.0%} of draws clipped" + (f" ({low:.0%} below 1 token)" if low else "")
                             + f", mean {float(np.mean(raw)):,.0f} -> {float(got.mean()):,.0f} tokens")
        below = bool((raw_in < 1).any() or (raw_out < 1).any())
        over = f" or over max_len = {max_len} (input + output)" if max_len is not None else ""
        hint = []
        if below:
            hint.append("a normal distribution whose std is near its mean goes below one token: use lognormal:MEAN,STD "
                        "for skewed positive lengths")
        if bool(((raw_in > 1) & (raw_in != inp)).any() or ((raw_out > 1) & (raw_out != out)).any()):
            hint.append("keep the distribution inside max_len, or raise max_len")
        raise LlmsimError(
            f"{share:.0%} of the requests' sampled lengths fall below 1 token{over} and would be clipped, "
            f"so the lengths would not follow the distribution asked for: {'; '.join(sides)}",
            hint="; ".join(hint))
    return f" ({share:.1%} of requests' sampled lengths clipped to 1..{max_len or idist.max_len} tokens)"


def make_workload(
    *,
    num_requests: int | None = None,
    isl: int | None = None,
    osl: int | None = None,
    input_dist: str | LengthDist | None = None,
    output_dist: str | LengthDist | None = None,
    lengths_from: str | Path | None = None,
    rate: float | None = None,
    cv: float | None = None,
    concurrency: int | None = None,
    trace: str | Path | None = None,
    seed: int = 0,
    warmup: int = 0,
    max_len: int | None = None,
    time_scale: float = 1.0,
    trace_format: str = "auto",
    client_jitter_s: float = 0.0,
) -> Workload:
    """Build a workload: the one builder the CLI uses.

    Arrivals: exactly one of `rate` (Poisson, or Gamma with `cv`), `concurrency`
    (closed loop of N clients; `concurrency == num_requests` is an offline batch) or
    `trace` (replay; `num_requests` keeps the first rows, all rows when None; `time_scale`
    stretches the gaps). Lengths (not with `trace`, which brings its own): input from
    `isl` or `input_dist`, output from `osl` or `output_dist`, or both jointly from
    `lengths_from` (a trace whose (input, output) pairs are resampled with replacement,
    keeping their correlation; its prefix hashes are not used). `max_len` caps
    input + output: trace rows over it are dropped; fixed isl + osl over it is an error;
    sampled lengths are clipped (output to max_len - 1, then input to max_len - output).

    Closed loop: `client_jitter_s` > 0 sends each request a uniform random delay in
    [0, client_jitter_s) after its client is free (stream ``PCG64(SeedSequence([seed, 7]))``).

    Deterministic: arrivals use ``PCG64(seed)`` (so `rate` alone reproduces
    ``poisson_arrivals(rate, n, seed)``); input lengths, output lengths and joint
    resampling use independent streams ``PCG64(SeedSequence([seed, k]))``.
    """
    if not is_number(client_jitter_s) or not (math.isfinite(client_jitter_s) and 0 <= client_jitter_s <= MAX_SETTING_S):
        raise LlmsimError(f"client_jitter_s must be a number of seconds in [0, {MAX_SETTING_S:g}], got {client_jitter_s!r}",
                          hint="seconds of client turnaround, e.g. 0.005; 0 = off")
    if trace is not None and not isinstance(trace, (str, Path)):
        raise LlmsimError(f"trace must be a path, got {trace!r}", hint="e.g. trace='azure2023_conv.csv'")
    if lengths_from is not None and not isinstance(lengths_from, (str, Path)):
        raise LlmsimError(f"lengths_from must be a path, got {lengths_from!r}", hint="e.g. lengths_from='azure2023_conv.csv'")
    if client_jitter_s and concurrency is None:
        raise LlmsimError("client turnaround jitter applies to a closed loop (concurrency) only",
                          hint="drop the jitter, or use concurrency=N instead of a rate or a trace")
    modes = [m for m, v in (("rate", rate), ("concurrency", concurrency), ("trace", trace)) if v is not None]
    if len(modes) != 1:
        raise LlmsimError(
            "give exactly one of rate (open loop), concurrency (closed loop) or trace (replay)"
            + (f"; got {' and '.join(modes)}" if modes else ""),
            hint="e.g. rate=10, concurrency=32, or trace='azure2023_conv.csv'",
        )
    if cv is not None and rate is None:
        raise LlmsimError("cv (arrival burstiness) only applies with a request rate", hint="drop cv or give rate")
    if not is_int(seed) or seed < 0:
        raise LlmsimError(f"seed must be a non-negative integer, got {seed!r}")
    if max_len is not None and (not is_int(max_len) or max_len < 2):
        raise LlmsimError(f"max_len must be an integer >= 2, got {max_len!r}")
    if time_scale != 1.0 and trace is None:
        raise LlmsimError("time_scale only applies to trace replay")
    len_opts = {k: v for k, v in (("isl", isl), ("osl", osl), ("input_dist", input_dist),
                                  ("output_dist", output_dist), ("lengths_from", lengths_from)) if v is not None}

    if trace is not None:
        if len_opts:
            raise LlmsimError(
                f"a trace brings its own lengths; drop {', '.join(len_opts)}",
                hint="to replay only the arrival pattern, build a Workload from load_trace() yourself",
            )
        if num_requests is not None:
            num_requests = _check_n(num_requests)
        w = load_trace(trace, fmt=trace_format, max_len=max_len, time_scale=time_scale, limit=num_requests)
        if warmup:
            w = replace(w, warmup=warmup)
        return w

    if num_requests is None:
        raise LlmsimError("num_requests is required with a rate or a concurrency")
    n = _check_n(num_requests)

    # ---- lengths
    if lengths_from is not None:
        other = [k for k in len_opts if k != "lengths_from"]
        if other:
            raise LlmsimError(f"lengths_from gives both lengths; drop {', '.join(other)}")
        src = load_trace(lengths_from, max_len=max_len)
        pick = _sub_rng(seed, 3).integers(0, len(src), size=n)
        inp, out = src.input_len[pick], src.output_len[pick]
        len_desc = f"lengths resampled from {Path(lengths_from).name}"
    else:
        if isl is not None and input_dist is not None:
            raise LlmsimError("give isl or input_dist, not both")
        if osl is not None and output_dist is not None:
            raise LlmsimError("give osl or output_dist, not both")
        if isl is None and input_dist is None:
            raise LlmsimError("input lengths missing", hint="give isl, input_dist or lengths_from")
        if osl is None and output_dist is None:
            raise LlmsimError("output lengths missing", hint="give osl, output_dist or lengths_from")
        if isl is not None and osl is not None and max_len is not None and _check_len(isl, "isl") + _check_len(osl, "osl") > max_len:
            raise LlmsimError(f"isl + osl = {isl + osl} exceeds max_len = {max_len}", hint="lower isl/osl or raise max_len")
        # (exactly one of isl / input_dist and one of osl / output_dist is given: checked above)
        idist = (
            parse_length_dist(input_dist, column="input")
            if input_dist is not None
            else LengthDist("fixed", a=_check_len(isl, "isl"), spec=f"fixed:{isl}")
        )
        odist = (
            parse_length_dist(output_dist, column="output")
            if output_dist is not None
            else LengthDist("fixed", a=_check_len(osl, "osl"), spec=f"fixed:{osl}")
        )
        if max_len is not None:
            # a fixed length is what was asked for: it must fit, and the sampled side is clipped around it
            fi = idist.a if idist.kind == "fixed" else None
            fo = odist.a if odist.kind == "fixed" else None
            if (fi or 0) + (fo or 0) + (fi is None) + (fo is None) > max_len:
                raise LlmsimError(f"input {idist} + output {odist} cannot fit max_len = {max_len} tokens",
                                  hint="lower the fixed length(s) or raise max_len")
            odist = odist.with_max_len(int(max_len - (fi if fi is not None else 1)))
            idist = idist.with_max_len(int(max_len - (fo if fo is not None else 1)))
        raw_in, raw_out = idist.draw(n, _sub_rng(seed, 1)), odist.draw(n, _sub_rng(seed, 2))
        inp = np.clip(raw_in, 1, idist.max_len).astype(np.int64, copy=False)
        out = np.clip(raw_out, 1, odist.max_len).astype(np.int64, copy=False)
        if max_len is not None:
            np.minimum(inp, max_len - out, out=inp)
        len_desc = f"input {idist}, output {odist}" + _check_clipping(raw_in, raw_out, inp, out, idist, odist, max_len)

    # ---- arrivals
    if rate is not None:
        if cv is not None:
            _check_cv(cv)  # (True is not 1)
        if cv is None or float(cv) == 1.0:
            arrival = poisson_arrivals(rate, n, seed)
            how = f"Poisson {float(rate):g} req/s"
        else:
            arrival = gamma_arrivals(rate, cv, n, seed)
            how = f"Gamma {float(rate):g} req/s cv={float(cv):g}"
        return Workload(inp, out, arrival, warmup=warmup, name=f"{how}, {n} requests, {len_desc}, seed {seed}")
    if concurrency is None or not is_int(concurrency) or concurrency < 1:
        raise LlmsimError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    how = "offline batch" if concurrency >= n else f"closed loop, {concurrency} clients"
    jitter = float(client_jitter_s)  # (checked on entry)
    delays = None
    if jitter > 0:
        delays = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 7]))).uniform(0.0, jitter, n)
        how += f", client turnaround U(0, {jitter * 1e3:g} ms)"
    return Workload(inp, out, None, concurrency=int(concurrency), warmup=warmup,
                    name=f"{how}, {n} requests, {len_desc}, seed {seed}", send_delay_s=delays)
