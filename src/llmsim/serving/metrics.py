"""Serving metrics, defined as benchmark clients report them (vLLM ``benchmark_serving``,
genai-perf), computed vectorised from per-request timestamp arrays.

Per request i (float64 seconds; NaN when the request did not complete):

* TTFT  = first_token_s - arrival_s          time to first token, *including queueing*
* E2E   = finish_s - arrival_s               end-to-end latency
* TPOT  = (E2E - TTFT) / (output_len - 1)    time per output token after the first; only
  requests with output_len > 1 have one (the others are left out of TPOT statistics)
* queue = first_scheduled_s - arrival_s      wait until the request first got prefill work
* ITL   = gap between consecutive output tokens of a request, from the engine's
  streaming `ItlHistogram` (vLLM's ITL; its token-weighted mean equals the
  token-weighted mean TPOT)

Statistics (`ttft_ms`, `tpot_ms`, `itl_ms`, `e2e_ms`, `queue_ms`) are dicts of
``mean, min, p50, p90, p95, p99, max`` in milliseconds; percentiles use numpy's
default linear interpolation, like vLLM. A value that is undefined (no request to
average, a zero-length window, queueing times not given...) is ``None`` so results
stay strict JSON.

Warm-up and the measurement window
----------------------------------
The first `warmup` requests *to complete* (by finish time) are left out of every
per-request statistic and of the throughput window; `num_requests` counts the rest.
``duration_s = last finish - first arrival`` over the counted requests. For a closed
loop (``closed_loop=True``) with warm-up, the window starts instead at the warm-up
cut-off, the finish time of the last warm-up request (clients keep the system full,
so that is when steady state is measured from).

Throughput over that window: ``output_tokens_per_s``, ``total_tokens_per_s``
(input + output), ``requests_per_s``, ``output_tokens_per_s_per_gpu``. Only tokens produced
inside the window count: after a closed-loop warm-up cut-off, a request already decoding
contributes the share of its output generated after the cut-off (decode taken as uniform
between its first token and its finish), and its prompt only if its first token came after.

Goodput (DistServe): with an `SLO`, a counted request is *good* when it meets every
SLO given: TTFT <= ttft_ms and TPOT <= tpot_ms (a request with one output token has
no TPOT and meets a TPOT SLO, as in vLLM, whose TPOT for it is 0; comparisons allow
1e-9 relative slack so a latency exactly at its target is not lost to rounding).
``goodput_requests_per_s`` = good requests / duration_s; ``slo_attainment`` = good /
(counted + requests that never completed): a request that never finished misses.

Energy: each GPU draws ``idle + (power - idle) * busy_fraction`` watts on average over
the window (``gpu_power_w`` is the board power when busy, e.g. its TDP; a missing
``gpu_idle_w`` means idle = power, i.e. full power throughout, an upper bound; a
missing ``busy_fraction`` means 1). ``energy_j = num_gpus * that * duration_s`` and
``energy_j_per_output_token = energy_j / counted output tokens``.

Cost: ``cost_usd = num_gpus * price_per_gpu_hour_usd * duration_s / 3600`` and
``usd_per_million_output_tokens = cost_usd / output tokens * 1e6``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LlmsimError

__all__ = ["SLO", "STAT_KEYS", "ItlHistogram", "per_request_table", "summarize", "write_per_request"]

STAT_KEYS = ("mean", "min", "p50", "p90", "p95", "p99", "max")
_PCTS = (50.0, 90.0, 95.0, 99.0)

# ---------------------------------------------------------------------------- ITL histogram

_LO = 1e-6  # lower edge of the first log bin (s); smaller values (incl. 0) go to bin 0
_HI = 1e3  # values >= this go to the overflow bin
_RATIO = 1.01  # bin width ratio: representative value within 0.5% of any value in its bin
_INV_LOG_R = 1.0 / math.log(_RATIO)
_K = math.ceil(math.log(_HI / _LO) * _INV_LOG_R)  # log bins are 1.._K
_NBINS = _K + 2  # + underflow (0) + overflow (_K + 1)
_OVER = _K + 1
_log = math.log

# representative value per bin: geometric middle (quantiles are then clamped to [min, max])
_REP = np.empty(_NBINS)
_REP[0] = _LO / 2
_REP[1:_OVER] = _LO * _RATIO ** (np.arange(1, _OVER) - 0.5)
_REP[_OVER] = _HI


class ItlHistogram:
    """Streaming histogram of inter-token latencies (seconds), in bounded memory.

    Log-spaced bins 1.01x wide from 1 us to 1000 s (2,083 bins, plus one for smaller
    values and one for larger), so quantiles are within ~0.5% (plus interpolation
    between neighbouring ranks); `mean`, `min` and `max` are exact. `add` is pure
    Python (one log, a list update) for the engine's hot loop; `add_many` bins a
    numpy batch at once.
    """

    __slots__ = ("_bulk", "_c", "_max", "_min", "_sum")

    def __init__(self) -> None:
        self._c: list[int] = [0] * _NBINS  # scalar adds
        self._bulk = np.zeros(_NBINS, dtype=np.int64)  # add_many / merge
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    def add(self, value_s: float, count: int = 1) -> None:
        """Record `count` token gaps of `value_s` seconds each. O(1), no numpy."""
        if count <= 0:
            if count < 0:
                raise LlmsimError(f"ITL count must be >= 0, got {count}")
            return
        if 1e-6 <= value_s < 1e3:
            i = int(_log(value_s * 1e6) * _INV_LOG_R) + 1
        elif value_s >= 1e3:
            i = _OVER
        elif value_s >= 0.0:
            i = 0
        else:
            raise LlmsimError(f"inter-token latency must be a number >= 0, got {value_s!r}")
        self._c[i] += count
        self._sum += value_s * count
        if value_s < self._min:  # noqa: PLR1730 (min() is slower in this hot path)
            self._min = value_s
        if value_s > self._max:  # noqa: PLR1730
            self._max = value_s

    def add_many(self, values_s: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Record values_s[j] counts[j] times for every j (counts default to 1)."""
        v = np.asarray(values_s, dtype=np.float64).ravel()
        if counts is None:
            c = np.ones(v.size, dtype=np.int64)
        else:
            c = np.asarray(counts)
            if c.ndim == 0:
                c = np.full(v.size, c)
            c = c.ravel()
            if c.size != v.size:
                raise LlmsimError(f"add_many needs one count per value: {v.size} values, {c.size} counts")
            if c.dtype.kind == "f" and not np.all(c == np.rint(c)):
                raise LlmsimError("ITL counts must be whole numbers")
            c = c.astype(np.int64)
            if c.size and c.min() < 0:
                raise LlmsimError("ITL counts must be >= 0")
            keep = c > 0
            if not keep.all():
                v, c = v[keep], c[keep]
        if v.size == 0:
            return
        if not (v.min() >= 0.0):  # also catches NaN
            raise LlmsimError("inter-token latencies must be numbers >= 0 (got a negative value or NaN)")
        idx = np.zeros(v.size, dtype=np.int64)
        mid = (v >= _LO) & (v < _HI)
        idx[mid] = (np.log(v[mid] * 1e6) * _INV_LOG_R).astype(np.int64) + 1
        idx[v >= _HI] = _OVER
        self._bulk += np.rint(np.bincount(idx, weights=c, minlength=_NBINS)).astype(np.int64)
        self._sum += float(np.dot(v, c))
        self._min = min(self._min, float(v.min()))
        self._max = max(self._max, float(v.max()))

    def merge(self, other: ItlHistogram) -> None:
        """Add all of `other`'s observations to this histogram."""
        if not isinstance(other, ItlHistogram):
            raise LlmsimError(f"can only merge an ItlHistogram, got {type(other).__name__}")
        self._bulk += other.counts()
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def counts(self) -> np.ndarray:
        """Observations per bin (bin 0: < 1 us; bin -1: >= 1000 s)."""
        return np.asarray(self._c, dtype=np.int64) + self._bulk

    @staticmethod
    def bin_edges() -> np.ndarray:
        """Edges of bins 1.._K (bin i spans [edges[i-1], edges[i]))."""
        return _LO * _RATIO ** np.arange(_K + 1)

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
        v = float(_REP[np.searchsorted(cum, j, side="right")])
        if frac > 0.0 and j + 1 < n:
            v1 = float(_REP[np.searchsorted(cum, j + 1, side="right")])
            v += frac * (v1 - v)
        return min(max(v, self._min), self._max)

    def stats_ms(self) -> dict[str, float | None]:
        """`STAT_KEYS` in milliseconds (None when empty)."""
        if self.count == 0:
            return {k: None for k in STAT_KEYS}
        out: dict[str, float | None] = {"mean": self.mean() * 1e3, "min": self._min * 1e3}
        for p in _PCTS:
            out[f"p{p:g}"] = self.quantile(p / 100.0) * 1e3
        out["max"] = self._max * 1e3
        return {k: float(out[k]) for k in STAT_KEYS}

    def __repr__(self) -> str:
        n = self.count
        if not n:
            return "ItlHistogram(count=0)"
        return f"ItlHistogram(count={n}, mean={self.mean() * 1e3:.4g} ms, p50={self.quantile(0.5) * 1e3:.4g} ms)"


# ---------------------------------------------------------------------------- SLO


@dataclass
class SLO:
    """Latency targets for goodput; None means no target on that metric."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float, np.number)) and math.isfinite(v) and v > 0):
                raise LlmsimError(f"SLO {name} must be a number > 0, got {v!r}")

    @property
    def empty(self) -> bool:
        return self.ttft_ms is None and self.tpot_ms is None


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
) -> dict:
    """Aggregate metrics of one simulated run (definitions: module docstring).

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
    if not isinstance(warmup, (int, np.integer)) or isinstance(warmup, bool) or warmup < 0:
        raise LlmsimError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not isinstance(num_gpus, (int, np.integer)) or isinstance(num_gpus, bool) or num_gpus < 1:
        raise LlmsimError(f"num_gpus must be an integer >= 1, got {num_gpus!r}")
    if itl is not None and not isinstance(itl, ItlHistogram):
        raise LlmsimError(f"itl must be an ItlHistogram, got {type(itl).__name__}")

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
    n_incomplete = int(n - done_idx.size)

    res: dict[str, Any] = {
        "num_requests": n_counted,
        "num_completed": int(done_idx.size),
        "num_warmup": w,
        "num_incomplete": n_incomplete,
    }

    duration = None
    if n_counted:
        end = float(fin[counted].max())
        if closed_loop and w > 0:
            start = float(fin[order[w - 1]])
        else:
            start = float(arr[counted].min())
        duration = end - start
    res["duration_s"] = duration
    window = duration if duration is not None and duration > 0 else None

    c_arr, c_ft, c_fin = arr[counted], ft[counted], fin[counted]
    c_out, c_in = out[counted], inp[counted]
    ttft_ms = (c_ft - c_arr) * 1e3
    e2e_ms = (c_fin - c_arr) * 1e3
    multi = c_out > 1
    tpot_ms = (c_fin[multi] - c_ft[multi]) / (c_out[multi] - 1) * 1e3
    res["ttft_ms"] = _stats(ttft_ms)
    res["tpot_ms"] = _stats(tpot_ms)
    res["itl_ms"] = itl.stats_ms() if itl is not None else {k: None for k in STAT_KEYS}
    res["e2e_ms"] = _stats(e2e_ms)
    res["queue_ms"] = _stats((sched[counted] - c_arr) * 1e3) if sched is not None else {k: None for k in STAT_KEYS}

    out_tokens = int(c_out.sum())
    in_tokens = int(c_in.sum())
    res["total_input_tokens"] = in_tokens
    res["total_output_tokens"] = out_tokens
    res["mean_input_tokens"] = float(c_in.mean()) if n_counted else None
    res["mean_output_tokens"] = float(c_out.mean()) if n_counted else None
    # tokens produced inside the window: with a closed-loop warm-up cut-off, requests already
    # in flight at the cut-off contribute only what they generate after it (their decode is
    # taken as uniform between first token and finish; a prompt counts if its first token
    # comes after the cut-off)
    win_out, win_in = float(out_tokens), float(in_tokens)
    if n_counted and closed_loop and w > 0:
        cut = start
        after_first = c_ft >= cut
        span = np.maximum(c_fin - c_ft, 1e-300)
        frac = np.where(after_first, 1.0, np.clip((c_fin - cut) / span, 0.0, 1.0))
        win_out = float(np.sum(np.where(after_first, c_out, frac * (c_out - 1))))
        win_in = float(np.sum(np.where(after_first, c_in, 0)))
    res["output_tokens_per_s"] = win_out / window if window else None
    res["total_tokens_per_s"] = (win_in + win_out) / window if window else None
    res["requests_per_s"] = n_counted / window if window else None
    res["output_tokens_per_s_per_gpu"] = win_out / window / int(num_gpus) if window else None
    res["num_gpus"] = int(num_gpus)

    if slo is not None and not isinstance(slo, SLO):
        raise LlmsimError(f"slo must be an SLO, got {type(slo).__name__}")
    if slo is not None and not slo.empty:
        good = np.ones(n_counted, dtype=bool)
        # a hair of slack so that a latency exactly at the target is not lost to rounding
        if slo.ttft_ms is not None:
            good &= ttft_ms <= slo.ttft_ms * (1 + 1e-9)
        if slo.tpot_ms is not None:
            tp = np.zeros(n_counted)
            tp[multi] = tpot_ms
            good &= tp <= slo.tpot_ms * (1 + 1e-9)
        n_good = int(good.sum())
        denom = n_counted + n_incomplete
        res["slo"] = {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms}
        res["num_good_requests"] = n_good
        res["goodput_requests_per_s"] = n_good / window if window else None
        res["slo_attainment"] = n_good / denom if denom else None

    if gpu_idle_w is not None and gpu_power_w is None:
        raise LlmsimError("gpu_idle_w needs gpu_power_w (the power when busy)")
    if busy_fraction is not None:
        busy = _nonneg(busy_fraction, "busy_fraction")
        if busy > 1:
            raise LlmsimError(f"busy_fraction must be in [0, 1], got {busy_fraction!r}")
        res["busy_fraction"] = busy
    else:
        busy = 1.0
    if gpu_power_w is not None:
        power = _nonneg(gpu_power_w, "gpu_power_w")
        idle = power if gpu_idle_w is None else _nonneg(gpu_idle_w, "gpu_idle_w")
        if idle > power:
            raise LlmsimError(f"gpu_idle_w ({idle:g} W) exceeds gpu_power_w ({power:g} W)")
        avg = idle + (power - idle) * busy
        res["gpu_avg_power_w"] = avg
        energy = int(num_gpus) * avg * duration if duration is not None else None
        res["energy_j"] = energy
        res["energy_j_per_output_token"] = energy / out_tokens if energy is not None and out_tokens else None
    if price_per_gpu_hour_usd is not None:
        price = _nonneg(price_per_gpu_hour_usd, "price_per_gpu_hour_usd")
        cost = int(num_gpus) * price * duration / 3600.0 if duration is not None else None
        res["cost_usd"] = cost
        res["usd_per_million_output_tokens"] = cost / out_tokens * 1e6 if cost is not None and out_tokens else None

    if extra:
        res.update(extra)
    return _plain(res)


# ---------------------------------------------------------------------------- per request


def per_request_table(
    arrival_s: np.ndarray,
    first_token_s: np.ndarray,
    finish_s: np.ndarray,
    input_len: np.ndarray,
    output_len: np.ndarray,
    *,
    first_scheduled_s: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One row per request (NaN where undefined: not completed, no TPOT, no queue time)."""
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
    return {
        "request_id": np.arange(n, dtype=np.int64),
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
