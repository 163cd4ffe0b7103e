"""Serving metrics, defined as benchmark clients report them (vLLM ``benchmark_serving``,
genai-perf), computed vectorised from per-request timestamp arrays.

Per request i (float64 seconds; NaN when the request did not complete):

* TTFT  = first_token_s - arrival_s          time to first token, *including queueing*
* E2E   = finish_s - arrival_s               end-to-end latency
* TPOT  = (E2E - TTFT) / (output_len - 1)    time per output token after the first; only
  requests with output_len > 1 have one (the others are left out of TPOT statistics)
* queue = first_scheduled_s - arrival_s      wait until the request first got prefill work
* ITL   = gap between consecutive streamed chunks of a request, from the engine's
  streaming `ItlHistogram` (vLLM's ITL, one per chunk; a chunk is one token, so its
  token-weighted mean equals the token-weighted mean TPOT, except under speculative
  decoding, where a verify step's accepted tokens form one chunk: `specdecode`). With
  warm-up the simulator cuts it by time: only gaps recorded after the warm-up cut-off
  (see below) are in it

Statistics (`ttft_ms`, `tpot_ms`, `itl_ms`, `e2e_ms`, `queue_ms`) are dicts of
``mean, min, p50, p90, p95, p99, max`` in milliseconds; percentiles use numpy's
default linear interpolation, like vLLM. A value that is undefined (no request to
average, a zero-length window, queueing times not given...) is ``None`` so results
stay strict JSON.

Streaming (`StreamingSummary`)
------------------------------
The same summary accumulated as requests complete, in memory that does not grow with the
number of requests: identical counts, token totals, throughput, goodput and min / max,
means from running sums (equal to numpy's to ~1e-15), and TTFT / TPOT / E2E / queueing
percentiles from `LogHistogram`s of 1.01x log bins (within 0.5% of numpy's, or 0.0005 ms
for latencies under 1 us). Its summary adds ``"percentiles"`` stating that resolution.

Warm-up and the measurement window
----------------------------------
The first `warmup` requests *to complete* (by finish time) are left out of every
per-request statistic and of the throughput window; `num_requests` counts the rest
(at least one completion is always counted). The *warm-up cut-off* is the finish time of
the last warm-up request.

ITL (a pool of token gaps, not per-request values) is cut by time instead: the simulator
(`simulate`) empties the ITL histogram, and every engine's not yet binned gaps, at the
moment the warm-up cut-off completion is reported, so ``itl_ms`` holds the gaps recorded
after the cut-off (to one engine iteration: an iteration that had started before the cut is
dropped whole). Those are the counted requests' gaps after the cut-off; their earlier gaps
are left out with the warm-up requests'. `summarize` itself uses the `itl` it is given as is.

Open loop: ``duration_s = last finish - first arrival`` over the counted requests, and the
throughputs count the counted requests' tokens over it -- what benchmark clients report
(vLLM ``benchmark_serving``: completed requests' tokens / benchmark duration). With
warm-up, warm-up requests still running early in that window load the engines there but
their tokens are not counted, so throughput over a window that overlaps them is
conservative (the per-token energy and cost below carry the same window and numerator).

Closed loop (``closed_loop=True``) with warm-up: the window starts instead at the warm-up
cut-off (clients keep the system full, so that is when steady state is measured from) and
only tokens produced inside it count: a request already decoding at the cut-off contributes
the share of its output generated after it (decode taken as uniform between its first token
and its finish), and its prompt only if its first token came after. (Every warm-up request
has finished by the cut-off, so that is every token the window produced.) If every counted
request finished at the cut-off itself (a warm-up that leaves no window, e.g. the last wave
of a closed loop finishing in one iteration), the window and tokens are the open loop's.

Throughput over the window: ``output_tokens_per_s``, ``total_tokens_per_s``
(input + output), ``requests_per_s``, ``output_tokens_per_s_per_gpu``; the *window output
tokens* are ``output_tokens_per_s x duration_s`` (``total_output_tokens`` is every counted
request's output, which in a closed loop with warm-up includes tokens made before the cut).

Goodput (DistServe): with an `SLO`, a counted request is *good* when it meets every
SLO given: TTFT <= ttft_ms and TPOT <= tpot_ms (a request with one output token has
no TPOT and meets a TPOT SLO, as in vLLM, whose TPOT for it is 0; comparisons allow
1e-9 relative slack so a latency exactly at its target is not lost to rounding).
``goodput_requests_per_s`` = good requests / duration_s; ``slo_attainment`` = good /
(counted + requests that never completed): a request that never finished misses.

Energy: each GPU draws ``idle + (power - idle) * busy_fraction`` watts on average over
the window (``gpu_power_w`` is the board power when busy, e.g. its TDP; a missing
``gpu_idle_w`` means idle = power, i.e. full power throughout, an upper bound; a
missing ``busy_fraction`` means 1). ``energy_j = num_gpus * that * duration_s``. A
deployment of several GPU groups (disaggregated prefill / decode pools, mixed GPU types)
passes ``gpu_groups`` (`GpuGroup`: GPU count, power, idle power and busy fraction of each)
instead: ``energy_j = sum over groups of gpus * (idle + (power - idle) * busy) * duration_s``,
``gpu_avg_power_w`` = that power / ``num_gpus`` and ``busy_fraction`` the GPU-weighted mean
of the groups'; ``gpu_groups`` may also be a function of the counted window (start, end),
so that the busy fraction is the GPUs' over that window (`simulate` passes one: after a
warm-up the busy share of the whole run would pair with the counted window's length and
tokens). ``energy_j_per_output_token = energy_j / window output tokens``, i.e. the
mean power of all GPUs / ``output_tokens_per_s``: the same numerator and window as the
throughput.

Cost: ``cost_usd = num_gpus * price_per_gpu_hour_usd * duration_s / 3600`` and
``usd_per_million_output_tokens = cost_usd / window output tokens * 1e6`` (again the
throughput's numerator and window).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ..checks import is_number
from ..errors import LlmsimError

__all__ = ["SLO", "STAT_KEYS", "GpuGroup", "ItlHistogram", "LogHistogram", "StreamingSummary", "per_request_table", "summarize", "write_per_request"]

STAT_KEYS = ("mean", "min", "p50", "p90", "p95", "p99", "max")
_PCTS = (50.0, 90.0, 95.0, 99.0)

# ---------------------------------------------------------------------------- log-binned histograms

_log = math.log


class LogHistogram:
    """Streaming histogram of values >= 0 in bounded memory: log-spaced bins.

    Bins are `ratio` wide from `lo` to `hi` (one more bin for smaller values, incl. 0, and
    one for larger ones). A quantile takes its bin's geometric middle, so it is within
    sqrt(ratio) - 1 of the value it stands for (0.499% for the default 1.01x bins; within
    `lo` / 2 absolute below `lo`; above `hi` it is clamped to the exact max), plus
    interpolation between neighbouring ranks as numpy's default. `count`, `mean`, `min`
    and `max` are exact. `add` is pure Python (one log, a list update) for hot loops;
    `add_many` bins a numpy batch at once. Values are in whatever unit `lo` and `hi` are.
    """

    __slots__ = ("_bulk", "_c", "_hi", "_inv_log_r", "_k", "_lo", "_max", "_min", "_nbins", "_ratio", "_rep", "_scale", "_sum", "what")

    def __init__(self, lo: float, hi: float, ratio: float = 1.01, what: str = "value") -> None:
        if not (0 < lo < hi and math.isfinite(hi) and ratio > 1):
            raise LlmsimError(f"a log histogram needs 0 < lo < hi and ratio > 1, got lo={lo!r} hi={hi!r} ratio={ratio!r}")
        self._lo, self._hi, self._ratio, self.what = float(lo), float(hi), float(ratio), what
        self._scale = 1.0 / self._lo
        self._inv_log_r = 1.0 / math.log(ratio)
        self._k = math.ceil(math.log(hi / lo) * self._inv_log_r)  # log bins are 1.._k
        self._nbins = self._k + 2  # + underflow (0) + overflow (_k + 1)
        # representative value per bin: geometric middle (quantiles are then clamped to [min, max])
        rep = np.empty(self._nbins)
        rep[0] = lo / 2
        rep[1:-1] = lo * ratio ** (np.arange(1, self._k + 1) - 0.5)
        rep[-1] = hi
        self._rep = rep
        self._c: list[int] = [0] * self._nbins  # scalar adds
        self._bulk = np.zeros(self._nbins, dtype=np.int64)  # add_many / merge
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    @property
    def relative_resolution(self) -> float:
        """Largest relative gap between a value and its bin's representative (sqrt(ratio) - 1)."""
        return math.sqrt(self._ratio) - 1.0

    def add(self, value: float, count: int = 1) -> None:
        """Record `count` observations of `value`. O(1), no numpy."""
        if count <= 0:
            if count < 0:
                raise LlmsimError(f"{self.what} count must be >= 0, got {count}")
            return
        if self._lo <= value < self._hi:
            i = int(_log(value * self._scale) * self._inv_log_r) + 1
        elif value >= self._hi:
            i = self._k + 1
        elif value >= 0.0:
            i = 0
        else:
            raise LlmsimError(f"{self.what} must be a number >= 0, got {value!r}")
        self._c[i] += count
        self._sum += value * count
        if value < self._min:  # noqa: PLR1730 (min() is slower in this hot path)
            self._min = value
        if value > self._max:  # noqa: PLR1730
            self._max = value

    def add_many(self, values: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Record values[j] counts[j] times for every j (counts default to 1)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if counts is None:
            c = None
        else:
            c = np.asarray(counts)
            if c.ndim == 0:
                c = np.full(v.size, c)
            c = c.ravel()
            if c.size != v.size:
                raise LlmsimError(f"add_many needs one count per value: {v.size} values, {c.size} counts")
            if c.dtype.kind == "f" and not np.all(c == np.rint(c)):
                raise LlmsimError(f"{self.what} counts must be whole numbers")
            c = c.astype(np.int64)
            if c.size and c.min() < 0:
                raise LlmsimError(f"{self.what} counts must be >= 0")
            keep = c > 0
            if not keep.all():
                v, c = v[keep], c[keep]
        if v.size == 0:
            return
        if not (v.min() >= 0.0):  # also catches NaN
            raise LlmsimError(f"{self.what} values must be numbers >= 0 (got a negative value or NaN)")
        idx = np.zeros(v.size, dtype=np.int64)
        mid = (v >= self._lo) & (v < self._hi)
        idx[mid] = (np.log(v[mid] * self._scale) * self._inv_log_r).astype(np.int64) + 1
        idx[v >= self._hi] = self._k + 1
        if c is None:
            self._bulk += np.bincount(idx, minlength=self._nbins)
            self._sum += float(v.sum())
        else:
            self._bulk += np.rint(np.bincount(idx, weights=c, minlength=self._nbins)).astype(np.int64)
            self._sum += float(np.dot(v, c))
        self._min = min(self._min, float(v.min()))
        self._max = max(self._max, float(v.max()))

    def reset(self) -> None:
        """Forget every observation (same bins)."""
        self._c = [0] * self._nbins
        self._bulk = np.zeros(self._nbins, dtype=np.int64)
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    def merge(self, other: LogHistogram) -> None:
        """Add all of `other`'s observations to this histogram (same bins)."""
        if not isinstance(other, LogHistogram):
            raise LlmsimError(f"can only merge a LogHistogram, got {type(other).__name__}")
        if (other._lo, other._hi, other._ratio) != (self._lo, self._hi, self._ratio):
            raise LlmsimError("can only merge histograms with the same bins (lo, hi, ratio)")
        self._bulk += other.counts()
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def counts(self) -> np.ndarray:
        """Observations per bin (bin 0: < lo; bin -1: >= hi)."""
        return np.asarray(self._c, dtype=np.int64) + self._bulk

    def bin_edges(self) -> np.ndarray:
        """Edges of the log bins 1.._k (bin i spans [edges[i-1], edges[i]))."""
        return self._lo * self._ratio ** np.arange(self._k + 1)

    @property
    def count(self) -> int:
        return int(sum(self._c) + int(self._bulk.sum()))

    def __len__(self) -> int:
        return self.count

    def mean(self) -> float:
        n = self.count
        return self._sum / n if n else math.nan

    @property
    def min(self) -> float:
        return self._min if self.count else math.nan

    @property
    def max(self) -> float:
        return self._max if self.count else math.nan

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1), interpolating between ranks like numpy's default."""
        if not 0.0 <= q <= 1.0:
            raise LlmsimError(f"quantile must be in [0, 1], got {q!r}")
        cum = np.cumsum(self.counts())
        n = int(cum[-1])
        if n == 0:
            return math.nan
        if q == 0.0:
            return self._min
        if q == 1.0:
            return self._max
        k = q * (n - 1)
        j = math.floor(k)
        frac = k - j
        v = float(self._rep[np.searchsorted(cum, j, side="right")])
        if frac > 0.0 and j + 1 < n:
            v1 = float(self._rep[np.searchsorted(cum, j + 1, side="right")])
            v += frac * (v1 - v)
        return min(max(v, self._min), self._max)

    def stats(self, scale: float = 1.0) -> dict[str, float | None]:
        """`STAT_KEYS` of the values times `scale` (None when empty)."""
        if self.count == 0:
            return {k: None for k in STAT_KEYS}
        out: dict[str, float] = {"mean": self.mean() * scale, "min": self._min * scale}
        for p in _PCTS:
            out[f"p{p:g}"] = self.quantile(p / 100.0) * scale
        out["max"] = self._max * scale
        return {k: float(out[k]) for k in STAT_KEYS}

    def __repr__(self) -> str:
        n = self.count
        if not n:
            return f"{type(self).__name__}(count=0)"
        return f"{type(self).__name__}(count={n}, mean={self.mean():.4g}, p50={self.quantile(0.5):.4g})"


class ItlHistogram(LogHistogram):
    """Inter-token latencies (seconds): 1.01x bins from 1 us to 1000 s (2,083 bins, plus one
    for smaller values and one for larger), quantiles within ~0.5% (see `LogHistogram`)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(1e-6, 1e3, 1.01, "inter-token latency")

    def stats_ms(self) -> dict[str, float | None]:
        """`STAT_KEYS` in milliseconds (None when empty)."""
        return self.stats(1e3)


# ---------------------------------------------------------------------------- SLO


@dataclass
class SLO:
    """Latency targets for goodput; None means no target on that metric."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms"):
            v = getattr(self, name)
            if v is not None and not (is_number(v) and math.isfinite(v) and v > 0):
                raise LlmsimError(f"SLO {name} must be a number > 0, got {v!r}")

    @property
    def empty(self) -> bool:
        return self.ttft_ms is None and self.tpot_ms is None


@dataclass(frozen=True)
class GpuGroup:
    """GPUs of one kind under one load, for energy (module docstring): `num_gpus` of them drawing
    `power_w` when busy (e.g. the TDP) and `idle_w` when idle (None: `power_w`, full power
    throughout), busy `busy_fraction` of the time (None: 1). A disaggregated deployment has one
    per pool."""

    num_gpus: int
    power_w: float | None  # (None only in the scalar form without a power: then no energy)
    idle_w: float | None = None
    busy_fraction: float | None = None


# the GPU groups, or a function of the counted window (start s, end s; None, None: no window) giving them
GpuGroups = Union[list[GpuGroup], Callable[[Optional[float], Optional[float]], list[GpuGroup]]]


def mean_busy_fraction(groups: list[GpuGroup]) -> float:
    """The GPU-weighted mean busy fraction of `groups` (a group without one: 1); one group's own."""
    busy = [1.0 if g.busy_fraction is None else g.busy_fraction for g in groups]
    if len(groups) == 1:
        return busy[0]
    return math.fsum(g.num_gpus * b for g, b in zip(groups, busy)) / sum(g.num_gpus for g in groups)


# ---------------------------------------------------------------------------- helpers


def _f64(x: Any, n: int | None, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise LlmsimError(f"{what} must be a 1-D array, got shape {a.shape}")
    if n is not None and a.size != n:
        raise LlmsimError(f"{what} has {a.size} entries, expected {n} (one per request)")
    return a


def _stats(x_ms: np.ndarray) -> dict[str, float | None]:
    if x_ms.size == 0:
        return {k: None for k in STAT_KEYS}
    p = np.percentile(x_ms, _PCTS)
    return {
        "mean": float(x_ms.mean()),
        "min": float(x_ms.min()),
        "p50": float(p[0]),
        "p90": float(p[1]),
        "p95": float(p[2]),
        "p99": float(p[3]),
        "max": float(x_ms.max()),
    }


def _plain(v: Any) -> Any:
    """numpy scalars/arrays -> Python numbers/lists, recursively (for json)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        v = float(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _nonneg(v: Any, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise LlmsimError(f"{what} must be a number, got {v!r}") from None
    if not (math.isfinite(f) and f >= 0):
        raise LlmsimError(f"{what} must be a finite number >= 0, got {v!r}")
    return f


# ---------------------------------------------------------------------------- summarize


def _latencies_ms(arr, ft, fin, out, sched) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-request TTFT, E2E, TPOT (requests with output > 1, flagged by `multi`) and queueing, ms."""
    multi = out > 1
    tpot = (fin[multi] - ft[multi]) / (out[multi] - 1) * 1e3
    queue = (sched - arr) * 1e3 if sched is not None else None
    return (ft - arr) * 1e3, (fin - arr) * 1e3, tpot, multi, queue


def _num_good(ttft_ms: np.ndarray, tpot_ms: np.ndarray, multi: np.ndarray, slo: SLO) -> int:
    """Requests meeting every target of `slo` (one output token: no TPOT, meets a TPOT target)."""
    good = np.ones(ttft_ms.size, dtype=bool)
    # a hair of slack so that a latency exactly at the target is not lost to rounding
    if slo.ttft_ms is not None:
        good &= ttft_ms <= slo.ttft_ms * (1 + 1e-9)
    if slo.tpot_ms is not None:
        tp = np.zeros(ttft_ms.size)
        tp[multi] = tpot_ms
        good &= tp <= slo.tpot_ms * (1 + 1e-9)
    return int(good.sum())


def _window_tokens(ft, fin, inp, out, cut: float) -> tuple[float, float]:
    """(input, output) tokens produced after a closed-loop warm-up cut-off: a request already
    decoding contributes the share of its output generated after the cut (decode taken as
    uniform between first token and finish); its prompt counts if its first token is after it."""
    after_first = ft >= cut
    span = np.maximum(fin - ft, 1e-300)
    frac = np.where(after_first, 1.0, np.clip((fin - cut) / span, 0.0, 1.0))
    return float(np.sum(np.where(after_first, inp, 0))), float(np.sum(np.where(after_first, out, frac * (out - 1))))


def _check_args(warmup: Any, num_gpus: Any, itl: Any, slo: Any) -> None:
    if not isinstance(warmup, (int, np.integer)) or isinstance(warmup, bool) or warmup < 0:
        raise LlmsimError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not isinstance(num_gpus, (int, np.integer)) or isinstance(num_gpus, bool) or num_gpus < 1:
        raise LlmsimError(f"num_gpus must be an integer >= 1, got {num_gpus!r}")
    if itl is not None and not isinstance(itl, ItlHistogram):
        raise LlmsimError(f"itl must be an ItlHistogram, got {type(itl).__name__}")
    if slo is not None and not isinstance(slo, SLO):
        raise LlmsimError(f"slo must be an SLO, got {type(slo).__name__}")


def _gpu_groups(gpu_groups: Any, num_gpus: int, gpu_power_w: Any, gpu_idle_w: Any, busy_fraction: Any) -> list[GpuGroup] | None:
    """The GPU groups for energy, checked and filled in (idle None -> power): the given
    `gpu_groups`, or one group of all `num_gpus` from the scalar arguments (whose power may be
    None: then only a busy fraction is reported); None when there is nothing to report."""
    if gpu_groups is not None:
        if gpu_power_w is not None or gpu_idle_w is not None or busy_fraction is not None:
            raise LlmsimError("give either gpu_groups or gpu_power_w / gpu_idle_w / busy_fraction, not both")
        groups = list(gpu_groups)
        if not groups or not all(isinstance(g, GpuGroup) for g in groups):
            raise LlmsimError("gpu_groups must be a non-empty list of GpuGroup")
        if any(not isinstance(g.num_gpus, (int, np.integer)) or isinstance(g.num_gpus, bool) or g.num_gpus < 1 for g in groups):
            raise LlmsimError("every GpuGroup needs num_gpus, an integer >= 1")
        if sum(int(g.num_gpus) for g in groups) != int(num_gpus):
            raise LlmsimError(f"the GPU groups hold {sum(int(g.num_gpus) for g in groups)} GPUs, num_gpus is {int(num_gpus)}")
        if any(g.power_w is None for g in groups):
            raise LlmsimError("every GpuGroup needs power_w (the power when busy)")
    else:
        if gpu_power_w is None and busy_fraction is None:
            if gpu_idle_w is not None:
                raise LlmsimError("gpu_idle_w needs gpu_power_w (the power when busy)")
            return None
        groups = [GpuGroup(int(num_gpus), gpu_power_w, gpu_idle_w, busy_fraction)]
    out = []
    for g in groups:
        if g.idle_w is not None and g.power_w is None:
            raise LlmsimError("gpu_idle_w needs gpu_power_w (the power when busy)")
        busy = None
        if g.busy_fraction is not None:
            busy = _nonneg(g.busy_fraction, "busy_fraction")
            if busy > 1:
                raise LlmsimError(f"busy_fraction must be in [0, 1], got {g.busy_fraction!r}")
        power = idle = None
        if g.power_w is not None:
            power = _nonneg(g.power_w, "gpu_power_w")
            idle = power if g.idle_w is None else _nonneg(g.idle_w, "gpu_idle_w")
            if idle > power:
                raise LlmsimError(f"gpu_idle_w ({idle:g} W) exceeds gpu_power_w ({power:g} W)")
        out.append(GpuGroup(int(g.num_gpus), power, idle, busy))
    return out


def _avg_power_w(g: GpuGroup) -> float:
    """A checked group's average draw (`_gpu_groups`: with one group's power_w, every group has
    power_w and idle_w)."""
    assert g.power_w is not None and g.idle_w is not None
    return g.idle_w + (g.power_w - g.idle_w) * (1.0 if g.busy_fraction is None else g.busy_fraction)


def _finish_summary(
    res: dict[str, Any], *, duration: float | None, win_in: float, win_out: float, n_good: int | None,
    slo: SLO | None, num_gpus: int, gpu_power_w: float | None, gpu_idle_w: float | None,
    busy_fraction: float | None, price_per_gpu_hour_usd: float | None, extra: dict | None,
    gpu_groups: GpuGroups | None = None, window_s: tuple[float, float] | None = None,
) -> dict:
    """Throughput, goodput, energy and cost from the per-request part of a summary (`res`: counts,
    latency stats and token totals, exact or streaming); returns the json-ready summary.
    `gpu_groups` may be a function of the counted window (`window_s`: start, end; None, None
    without one) giving the groups busy over that window."""
    if callable(gpu_groups):
        gpu_groups = gpu_groups(*(window_s or (None, None)))
    window = duration if duration is not None and duration > 0 else None
    n_counted = res["num_requests"]
    res["output_tokens_per_s"] = win_out / window if window else None
    res["total_tokens_per_s"] = (win_in + win_out) / window if window else None
    res["requests_per_s"] = n_counted / window if window else None
    res["output_tokens_per_s_per_gpu"] = win_out / window / int(num_gpus) if window else None
    res["num_gpus"] = int(num_gpus)

    if slo is not None and not slo.empty:
        assert n_good is not None  # the callers count good requests whenever there is an SLO
        denom = n_counted + res["num_incomplete"]
        res["slo"] = {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms}
        res["num_good_requests"] = n_good
        res["goodput_requests_per_s"] = n_good / window if window else None
        res["slo_attainment"] = n_good / denom if denom else None

    # per-token energy and cost: the throughput's numerator (window output tokens) and window;
    # over a counted window of zero length (one iteration's completions, all of them in it)
    # undefined, not 0: None, as the throughputs
    per_token = window is not None and win_out > 0
    groups = _gpu_groups(gpu_groups, num_gpus, gpu_power_w, gpu_idle_w, busy_fraction)
    if groups is not None:
        if any(g.busy_fraction is not None for g in groups):
            res["busy_fraction"] = mean_busy_fraction(groups)
        if groups[0].power_w is not None:
            avgs = [_avg_power_w(g) for g in groups]
            watts = math.fsum(g.num_gpus * a for g, a in zip(groups, avgs))
            res["gpu_avg_power_w"] = avgs[0] if len(groups) == 1 else watts / int(num_gpus)
            energy = watts * duration if duration is not None else None
            res["energy_j"] = energy
            res["energy_j_per_output_token"] = energy / win_out if energy is not None and per_token else None
    if price_per_gpu_hour_usd is not None:
        price = _nonneg(price_per_gpu_hour_usd, "price_per_gpu_hour_usd")
        cost = int(num_gpus) * price * duration / 3600.0 if duration is not None else None
        res["cost_usd"] = cost
        res["usd_per_million_output_tokens"] = cost / win_out * 1e6 if cost is not None and per_token else None

    if extra:
        res.update(extra)
    return _plain(res)


def summarize(
    arrival_s: np.ndarray,
    first_token_s: np.ndarray,
    finish_s: np.ndarray,
    input_len: np.ndarray,
    output_len: np.ndarray,
    *,
    first_scheduled_s: np.ndarray | None = None,
    itl: ItlHistogram | None = None,
    warmup: int = 0,
    slo: SLO | None = None,
    num_gpus: int = 1,
    gpu_power_w: float | None = None,
    gpu_idle_w: float | None = None,
    busy_fraction: float | None = None,
    price_per_gpu_hour_usd: float | None = None,
    extra: dict | None = None,
    closed_loop: bool = False,
    gpu_groups: GpuGroups | None = None,
) -> dict:
    """Aggregate metrics of one simulated run (definitions: module docstring).

    `itl` is summarised as given: the caller decides which token gaps it holds (`simulate`
    cuts it by time at the warm-up cut-off, the finish of the last warm-up request, so with
    warm-up ITL covers the gaps recorded after that moment). Throughput, J per output token and
    $ per million output tokens share one numerator and window: the counted requests' output
    tokens from the first counted arrival to the last counted finish (open loop), or the tokens
    produced from the warm-up cut-off to the last finish (closed loop with warm-up). Energy for
    several GPU kinds or pools: `gpu_groups` instead of `gpu_power_w` / `gpu_idle_w` /
    `busy_fraction`.

    Returns a json-serialisable dict of plain floats/ints (None where undefined);
    keys of `extra` are added last and win on a clash.
    """
    arr = _f64(arrival_s, None, "arrival_s")
    n = arr.size
    ft = _f64(first_token_s, n, "first_token_s")
    fin = _f64(finish_s, n, "finish_s")
    inp = _f64(input_len, n, "input_len")
    out = _f64(output_len, n, "output_len")
    sched = None if first_scheduled_s is None else _f64(first_scheduled_s, n, "first_scheduled_s")
    _check_args(warmup, num_gpus, itl, slo)

    done = np.isfinite(fin)
    done_idx = np.flatnonzero(done)
    if done_idx.size:
        a, f, e = arr[done_idx], ft[done_idx], fin[done_idx]
        bad = ~(np.isfinite(a) & np.isfinite(f))
        if bad.any():
            i = int(done_idx[np.flatnonzero(bad)[0]])
            raise LlmsimError(
                f"request {i} finished but its arrival or first-token time is not finite",
                hint="this is a bug in the engine that produced the timestamps",
            )
        tol = 1e-9 + 1e-12 * np.abs(e)
        bad = (f < a - tol) | (e < f - tol)
        if bad.any():
            i = int(done_idx[np.flatnonzero(bad)[0]])
            raise LlmsimError(
                f"request {i} has inconsistent times: arrival {arr[i]!r}, first token {ft[i]!r}, finish {fin[i]!r}",
                hint="need arrival <= first token <= finish (a bug in the engine that produced them)",
            )
        if sched is not None:
            s = sched[done_idx]
            bad = ~np.isfinite(s) | (s < a - tol) | (s > f + tol)
            if bad.any():
                i = int(done_idx[np.flatnonzero(bad)[0]])
                raise LlmsimError(
                    f"request {i}: first_scheduled_s {sched[i]!r} is not between arrival {arr[i]!r} and first token {ft[i]!r}",
                    hint="a bug in the engine that produced them",
                )
        if np.any(out[done_idx] < 1) or np.any(inp[done_idx] < 0):
            raise LlmsimError("completed requests need output_len >= 1 and input_len >= 0")

    # completion order (stable: ties keep request order); warm-up = first `warmup` to finish
    order = done_idx[np.argsort(fin[done_idx], kind="stable")]
    w = min(int(warmup), order.size)
    counted = order[w:]
    n_counted = int(counted.size)

    res: dict[str, Any] = {
        "num_requests": n_counted,
        "num_completed": int(done_idx.size),
        "num_warmup": w,
        "num_incomplete": int(n - done_idx.size),
    }

    duration = None
    cut_window = False  # the closed-loop window starts at the warm-up cut-off
    if n_counted:
        end = float(fin[counted].max())
        start = float(arr[counted].min())
        if closed_loop and w > 0 and end > float(fin[order[w - 1]]):
            start, cut_window = float(fin[order[w - 1]]), True
        duration = end - start
    res["duration_s"] = duration

    c_arr, c_ft, c_fin = arr[counted], ft[counted], fin[counted]
    c_out, c_in = out[counted], inp[counted]
    ttft_ms, e2e_ms, tpot_ms, multi, queue_ms = _latencies_ms(c_arr, c_ft, c_fin, c_out, None if sched is None else sched[counted])
    res["ttft_ms"] = _stats(ttft_ms)
    res["tpot_ms"] = _stats(tpot_ms)
    res["itl_ms"] = itl.stats_ms() if itl is not None else {k: None for k in STAT_KEYS}
    res["e2e_ms"] = _stats(e2e_ms)
    res["queue_ms"] = _stats(queue_ms) if queue_ms is not None else {k: None for k in STAT_KEYS}

    out_tokens = int(c_out.sum())
    in_tokens = int(c_in.sum())
    res["total_input_tokens"] = in_tokens
    res["total_output_tokens"] = out_tokens
    res["mean_input_tokens"] = float(c_in.mean()) if n_counted else None
    res["mean_output_tokens"] = float(c_out.mean()) if n_counted else None
    win_in, win_out = float(in_tokens), float(out_tokens)
    if cut_window:
        win_in, win_out = _window_tokens(c_ft, c_fin, c_in, c_out, start)
    n_good = _num_good(ttft_ms, tpot_ms, multi, slo) if slo is not None and not slo.empty else None
    return _finish_summary(res, duration=duration, win_in=win_in, win_out=win_out, n_good=n_good, slo=slo, num_gpus=num_gpus,
                           gpu_power_w=gpu_power_w, gpu_idle_w=gpu_idle_w, busy_fraction=busy_fraction,
                           price_per_gpu_hour_usd=price_per_gpu_hour_usd, extra=extra, gpu_groups=gpu_groups,
                           window_s=(start, end) if duration is not None else None)


# ---------------------------------------------------------------------------- streaming summary

_LAT_LO_MS, _LAT_HI_MS, _LAT_RATIO = 1e-3, 1e10, 1.01  # request latency histograms: 1 us .. ~116 days, 1.01x bins


class StreamingSummary:
    """The per-request half of `summarize`, accumulated as requests complete, in bounded memory.

    `add` completed requests a batch at a time (numpy arrays, one entry per request: times in
    seconds, token counts); `summary` then returns a dict with the same keys as `summarize`
    (plus ``"percentiles"``, describing the estimate). Counts, token totals, means (from exact
    sums), min / max, the throughput window, goodput and SLO attainment are computed as
    `summarize` computes them; the TTFT, TPOT, E2E and queueing percentiles come from
    `LogHistogram`s of 1.01x bins, within 0.5% of numpy's (or 0.0005 ms under 1 us).

    Warm-up: the first `warmup` completions *by finish time* (ties: in the order added) are
    left out, as `summarize` does, even if completions are added out of time order, provided
    `now` is kept at a time before which no completion added later finishes (the simulator's
    clock): until the warm-up set is decided, completions wait in a heap and leave it in
    finish order once they finish at or before `now`.
    """

    def __init__(self, warmup: int = 0, slo: SLO | None = None, closed_loop: bool = False) -> None:
        _check_args(warmup, 1, None, slo)
        self.warmup, self.slo, self.closed_loop = int(warmup), slo, closed_loop
        self.now = -math.inf
        self._deciding = self.warmup > 0  # the warm-up set is still being decided
        self._pending: list[tuple] = []  # (finish, seq, arrival, first, sched, inp, out) while it is
        self._seq = 0
        self._released = 0  # warm-up completions (taken from _pending in finish order)
        self._last: tuple | None = None  # the latest warm-up completion (a, f, e, s, inp, out)
        self._prev_finish = math.nan  # finish time of the warm-up completion before it
        self.num_counted = 0
        self._start = math.inf  # earliest counted arrival
        self._end = -math.inf  # latest counted finish
        self._cut: float | None = None  # closed loop with warm-up: finish time of the last warm-up completion
        self._hist = {k: LogHistogram(_LAT_LO_MS, _LAT_HI_MS, _LAT_RATIO, k.replace("_ms", " (ms)"))
                      for k in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms")}
        self._in_tokens = self._out_tokens = 0
        self._win_in = self._win_out = 0.0
        self._good = 0

    def add(self, arrival: np.ndarray, first: np.ndarray, finish: np.ndarray, sched: np.ndarray, inp: np.ndarray, out: np.ndarray) -> None:
        """Completed requests in the order they completed: arrival, first-token, finish and
        first-scheduled times (s), input and output tokens."""
        cols = [np.asarray(x, dtype=np.float64).ravel() for x in (arrival, first, finish, sched, inp, out)]
        if len({c.size for c in cols}) != 1:
            raise LlmsimError("StreamingSummary.add needs one entry per request in every array")
        if not self._deciding:
            self._count(*cols)
            return
        for a, f, e, s, i, o in zip(*(c.tolist() for c in cols)):
            self._seq += 1
            heapq.heappush(self._pending, (e, self._seq, a, f, s, i, o))
        self._release(self.now)

    @property
    def num_completed(self) -> int:
        return self._released + len(self._pending) + self.num_counted

    @property
    def last_finish(self) -> float:
        """Latest finish time over all completions, warm-up included (after `close`; -inf if none)."""
        return max(self._end, self._last[2] if self._last is not None else -math.inf)

    def _release(self, upto: float) -> None:
        """Take completions finishing at or before `upto` from the heap, in finish order, into the
        warm-up set; once it is full, the rest are counted."""
        p = self._pending
        while p and p[0][0] <= upto and self._released < self.warmup:
            e, _seq, a, f, s, i, o = heapq.heappop(p)
            if self._last is not None:
                if e < self._last[2]:
                    raise LlmsimError("completions reported out of order", hint="a bug: StreamingSummary.now ran ahead of a completion")
                self._prev_finish = self._last[2]
            self._last = (a, f, e, s, i, o)
            self._released += 1
        if self._released == self.warmup and self._deciding:
            self._deciding = False
            assert self._last is not None  # warmup > 0 completions were released
            self._cut = self._last[2]
            if p:
                e, _seq, a, f, s, i, o = (np.array(c) for c in zip(*sorted(p)))
                p.clear()
                self._count(a, f, e, s, i, o)

    def _count(self, arr: np.ndarray, ft: np.ndarray, fin: np.ndarray, sched: np.ndarray, inp: np.ndarray, out: np.ndarray) -> None:
        """Accumulate counted completions (float64 arrays, one entry per request)."""
        if arr.size == 0:
            return
        tol = 1e-9 + 1e-12 * np.abs(fin)  # as summarize
        if np.any((ft < arr - tol) | (fin < ft - tol) | ~(sched >= arr - tol) | (sched > ft + tol)):
            raise LlmsimError("a completed request has inconsistent times (need arrival <= first scheduled <= first token <= finish)",
                              hint="a bug in the engine that produced them")
        self.num_counted += arr.size
        self._start = min(self._start, float(arr.min()))
        self._end = max(self._end, float(fin.max()))
        ttft, e2e, tpot, multi, queue = _latencies_ms(arr, ft, fin, out, sched)
        assert queue is not None  # (sched is given)
        for k, v in (("ttft_ms", ttft), ("tpot_ms", tpot), ("e2e_ms", e2e), ("queue_ms", queue)):
            self._hist[k].add_many(v)
        i_tok, o_tok = int(inp.sum()), int(out.sum())
        self._in_tokens += i_tok
        self._out_tokens += o_tok
        if self.closed_loop and self._cut is not None:
            wi, wo = _window_tokens(ft, fin, inp, out, self._cut)
        else:
            wi, wo = float(i_tok), float(o_tok)
        self._win_in += wi
        self._win_out += wo
        if self.slo is not None and not self.slo.empty:
            self._good += _num_good(ttft, tpot, multi, self.slo)

    def close(self) -> None:
        """All completions are in: decide the warm-up set and count what waits."""
        self._release(math.inf)
        if self.num_counted == 0 and self._last is not None:
            # every completion fell in the warm-up: count the last, as summarize (warm-up < completions)
            self._cut = None if math.isnan(self._prev_finish) else self._prev_finish
            self._released -= 1
            self._count(*(np.array([x], dtype=np.float64) for x in self._last))

    def summary(
        self, num_requests: int, *, itl: ItlHistogram | None = None, num_gpus: int = 1, gpu_power_w: float | None = None,
        gpu_idle_w: float | None = None, busy_fraction: float | None = None, price_per_gpu_hour_usd: float | None = None,
        extra: dict | None = None, gpu_groups: GpuGroups | None = None,
    ) -> dict:
        """The summary of `num_requests` requests (those never added never completed); as `summarize`."""
        _check_args(0, num_gpus, itl, None)
        self.close()
        n = self.num_counted
        res: dict[str, Any] = {
            "num_requests": n,
            "num_completed": self.num_completed,
            "num_warmup": self._released,
            "num_incomplete": int(num_requests) - self.num_completed,
        }
        duration = None
        win_in, win_out = float(self._in_tokens), float(self._out_tokens)
        if n:
            start = self._start
            if self.closed_loop and self._cut is not None and self._end > self._cut:
                start, win_in, win_out = self._cut, self._win_in, self._win_out
            duration = self._end - start
        res["duration_s"] = duration
        h = self._hist
        res["ttft_ms"] = h["ttft_ms"].stats()
        res["tpot_ms"] = h["tpot_ms"].stats()
        res["itl_ms"] = itl.stats_ms() if itl is not None else {k: None for k in STAT_KEYS}
        res["e2e_ms"] = h["e2e_ms"].stats()
        res["queue_ms"] = h["queue_ms"].stats()
        res["total_input_tokens"] = self._in_tokens
        res["total_output_tokens"] = self._out_tokens
        res["mean_input_tokens"] = self._in_tokens / n if n else None
        res["mean_output_tokens"] = self._out_tokens / n if n else None
        slo = self.slo
        res = _finish_summary(res, duration=duration, win_in=win_in, win_out=win_out,
                              n_good=self._good if slo is not None and not slo.empty else None, slo=slo, num_gpus=num_gpus,
                              gpu_power_w=gpu_power_w, gpu_idle_w=gpu_idle_w, busy_fraction=busy_fraction,
                              price_per_gpu_hour_usd=price_per_gpu_hour_usd, extra=extra, gpu_groups=gpu_groups,
                              window_s=(start, self._end) if duration is not None else None)
        res["percentiles"] = {
            "method": "log histogram (TTFT, TPOT, E2E, queueing; ITL always)",
            "relative_resolution": h["ttft_ms"].relative_resolution,
            "absolute_resolution_ms": _LAT_LO_MS / 2,
        }
        return res


# ---------------------------------------------------------------------------- per request


def per_request_table(
    arrival_s: np.ndarray,
    first_token_s: np.ndarray,
    finish_s: np.ndarray,
    input_len: np.ndarray,
    output_len: np.ndarray,
    *,
    first_scheduled_s: np.ndarray | None = None,
    warmup_ids: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One row per request (NaN where undefined: not completed, no TPOT, no queue time).
    ``warmup`` is True for the requests `warmup_ids` names: excluded from the summary as warm-up."""
    arr = _f64(arrival_s, None, "arrival_s")
    n = arr.size
    ft = _f64(first_token_s, n, "first_token_s")
    fin = _f64(finish_s, n, "finish_s")
    inp = np.asarray(input_len).astype(np.int64)
    out = np.asarray(output_len).astype(np.int64)
    if inp.shape != (n,) or out.shape != (n,):
        raise LlmsimError(f"input_len and output_len must have {n} entries (one per request)")
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (fin - ft) / np.maximum(out - 1, 1) * 1e3, np.nan)
        queue = (
            (_f64(first_scheduled_s, n, "first_scheduled_s") - arr) * 1e3
            if first_scheduled_s is not None
            else np.full(n, np.nan)
        )
    warm = np.zeros(n, dtype=bool)
    if warmup_ids is not None and len(warmup_ids):
        ids = np.asarray(warmup_ids, dtype=np.int64)
        if ids.min() < 0 or ids.max() >= n:
            raise LlmsimError(f"warmup_ids must be request ids in [0, {n})")
        warm[ids] = True
    return {
        "request_id": np.arange(n, dtype=np.int64),
        "warmup": warm,
        "arrival_s": arr,
        "first_token_s": ft,
        "finish_s": fin,
        "input_tokens": inp,
        "output_tokens": out,
        "ttft_ms": (ft - arr) * 1e3,
        "tpot_ms": tpot,
        "e2e_ms": (fin - arr) * 1e3,
        "queue_ms": queue,
    }


def write_per_request(table: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write a `per_request_table` as CSV (``.csv``) or Parquet (``.parquet``/``.pq``)."""
    import pyarrow as pa

    if not isinstance(path, (str, Path)):
        raise LlmsimError(f"per-request results are written to a file path, got {path!r}", hint="e.g. 'requests.parquet' or 'requests.csv'")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise LlmsimError(f"cannot write per-request results to {p.name}", hint="use a .csv or .parquet file name")
    tbl = pa.table({k: np.asarray(v) for k, v in table.items()})
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(tbl, p)
        else:
            import pyarrow.parquet as pq

            pq.write_table(tbl, p)
    except OSError as e:
        raise LlmsimError(f"cannot write {p}: {e.strerror or e}") from None
    return p
