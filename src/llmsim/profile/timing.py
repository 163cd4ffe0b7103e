"""The timing loop: warm-up, repeats, median and p10/p90, optional L2 flush between repeats.

The clock is injected (`Timer`), so the loop runs the same way on a GPU (CUDA events,
`CudaEventTimer`), on a CPU (`PerfCounterTimer`) and in unit tests (`FakeTimer`, a clock
that the measured function advances itself). Nothing here imports torch at module level.

A timer hands out *marks*: `mark()` records "now" in the order of the work submitted so
far (a CUDA event recorded on the current stream, or a host timestamp after a
synchronisation), and `elapsed_s(a, b)` is the time between two marks. One *sample* is
the time between two marks around `inner` back-to-back calls, divided by `inner`:

* memory-bound kernels are timed one call per sample with an L2 flush before each
  (so weights / KV cache are read from HBM, as in a real forward pass where every layer
  reads different data); the flush runs *before* the start mark, so it is not timed;
* short compute-bound kernels are batched (`inner` calls per sample) so that a sample
  is long compared with the timer's resolution and the launch gaps;
* before each start mark the device is *held* busy (`Timer.hold`: a GPU spin kernel, not
  timed) for longer than the host needs to enqueue the sample's calls, so the start mark
  fires only once the calls are queued. Without it a kernel shorter than its host launch
  time (a decode GEMM, SDPA at batch 1: ~5-30 us of Python and dispatcher per call) is
  timed at the host's launch rate instead of the GPU's speed, which inflated sub-10-us
  kernels about 2x in the first H100 profile. Serving engines replay such kernels from
  CUDA graphs, without those gaps, so the kernel time is the quantity to measure.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CudaEventTimer",
    "FakeTimer",
    "Measurement",
    "PerfCounterTimer",
    "Timer",
    "TimingConfig",
    "auto_measure",
    "measure",
    "percentile",
]


# ------------------------------------------------------------------------------------------ timers
@runtime_checkable
class Timer(Protocol):
    """A clock for the timing loop."""

    name: str

    def mark(self) -> Any:
        """Record 'now', after all work submitted so far; returns an opaque mark."""

    def elapsed_s(self, start: Any, end: Any) -> float:
        """Seconds between two marks (waits for the work between them where needed)."""

    def synchronize(self) -> None:
        """Wait until all submitted work has finished."""

    def hold(self, seconds: float) -> None:
        """Keep the device busy for about `seconds` (untimed), so that work the host submits
        next is queued before the following mark fires; a no-op for host clocks."""


class PerfCounterTimer:
    """Host clock (`time.perf_counter`), synchronising before each mark.

    `sync` is called before every mark (e.g. ``torch.cuda.synchronize`` to time a GPU
    from the host; nothing for CPU work, which is synchronous).
    """

    name = "perf_counter"

    def __init__(self, sync: Callable[[], None] | None = None):
        self._sync = sync

    def synchronize(self) -> None:
        if self._sync is not None:
            self._sync()

    def mark(self) -> float:
        self.synchronize()
        return time.perf_counter()

    def hold(self, seconds: float) -> None:
        pass  # host work is synchronous: nothing to cover

    def elapsed_s(self, start: float, end: float) -> float:
        return end - start


class CudaEventTimer:
    """CUDA events recorded on the current stream of `device` (resolution about 0.5 us)."""

    name = "cuda_event"

    def __init__(self, device: Any = None):
        import torch

        self._torch = torch
        self._device = device
        self._cycles_per_s: float | None = None

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self._device)

    def hold(self, seconds: float) -> None:
        """A spin kernel (`torch.cuda._sleep`) of about `seconds` on the current stream."""
        if seconds <= 0:
            return
        if self._cycles_per_s is None:  # the spin counts clock cycles: measure their rate once
            cyc = 2_000_000
            self._torch.cuda._sleep(cyc)  # warm (first launch)
            a = self.mark()
            self._torch.cuda._sleep(cyc)
            b = self.mark()
            self._cycles_per_s = cyc / max(self.elapsed_s(a, b), 1e-6)
        self._torch.cuda._sleep(max(1, int(seconds * self._cycles_per_s)))

    def mark(self) -> Any:
        e = self._torch.cuda.Event(enable_timing=True)
        e.record(self._torch.cuda.current_stream(self._device))
        return e

    def elapsed_s(self, start: Any, end: Any) -> float:
        end.synchronize()
        return start.elapsed_time(end) * 1e-3  # ms -> s


class FakeTimer:
    """A clock for unit tests: it reads `now`, which the code under test advances.

    `advance(dt)` moves the clock; build the measured function so that each call advances
    it by that call's "latency". `marks` counts the marks taken.
    """

    name = "fake"

    def __init__(self, start: float = 0.0):
        self.now = float(start)
        self.marks = 0
        self.syncs = 0
        self.held_s: list[float] = []

    def advance(self, dt: float) -> None:
        self.now += float(dt)

    def synchronize(self) -> None:
        self.syncs += 1

    def mark(self) -> float:
        self.marks += 1
        return self.now

    def hold(self, seconds: float) -> None:
        self.held_s.append(float(seconds))  # recorded for tests; the fake clock does not move

    def elapsed_s(self, start: float, end: float) -> float:
        return end - start


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class TimingConfig:
    """How long to time one shape: the same rule plans the budget and runs the loop.

    For an expected kernel time t: `warmup` calls (1 when t >= `long_kernel_s`), then
    `repeats` samples with repeats * inner * t close to `target_s`, between `min_repeats`
    and `max_repeats`. Without an L2 flush, calls are batched `inner` per sample so that
    a sample lasts at least `min_sample_s` (at most `max_inner` calls).
    """

    warmup: int = 3
    min_repeats: int = 5
    max_repeats: int = 30
    target_s: float = 0.02
    min_sample_s: float = 5e-5
    max_inner: int = 64
    long_kernel_s: float = 0.01
    # device hold before each start mark: hold_factor x (host time to enqueue the sample's
    # calls, measured on the probe call) + hold_min_s, at most hold_max_s; 0, 0 turns it off
    hold_factor: float = 2.0
    hold_min_s: float = 2e-5
    hold_max_s: float = 5e-3

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_repeats < 1 or self.max_repeats < self.min_repeats or self.max_inner < 1:
            raise ValueError(f"invalid timing config {self}")
        if not (self.hold_factor >= 0 and self.hold_min_s >= 0 and self.hold_max_s >= self.hold_min_s):
            raise ValueError(f"invalid timing config {self}: hold_factor, hold_min_s >= 0 and hold_max_s >= hold_min_s")

    def hold_s(self, host_s: float, inner: int = 1) -> float:
        """Device hold before a sample of `inner` calls whose host enqueue takes `host_s` each."""
        if self.hold_factor == 0 and self.hold_min_s == 0:
            return 0.0
        return min(self.hold_max_s, self.hold_factor * max(host_s, 0.0) * inner + self.hold_min_s)

    def schedule(self, expected_s: float, flush: bool = False) -> tuple[int, int, int]:
        """(warmup, repeats, inner) for a kernel expected to take `expected_s` seconds."""
        t = max(float(expected_s), 1e-7) if math.isfinite(expected_s) else 1e-3
        warmup = 1 if t >= self.long_kernel_s else self.warmup
        inner = 1 if flush else max(1, min(self.max_inner, math.ceil(self.min_sample_s / t - 1e-9)))
        repeats = max(self.min_repeats, min(self.max_repeats, math.ceil(self.target_s / (t * inner) - 1e-9)))
        return warmup, repeats, inner


@dataclass(frozen=True)
class Measurement:
    """The result of timing one shape. Times in seconds, per call."""

    median_s: float
    p10_s: float
    p90_s: float
    mean_s: float
    samples: tuple[float, ...] = field(repr=False)
    warmup: int
    repeats: int
    inner: int
    flushed: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("samples")
        return d


def percentile(xs: list[float] | tuple[float, ...], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation (numpy's default rule)."""
    s = sorted(xs)
    if not s:
        raise ValueError("no samples")
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ------------------------------------------------------------------------------------------ loop
def measure(fn: Callable[[], Any], timer: Timer, *, warmup: int = 3, repeats: int = 10, inner: int = 1,
            flush: Callable[[], Any] | None = None, hold_s: float = 0.0) -> Measurement:
    """Time `fn`: `warmup` untimed calls, then `repeats` samples of `inner` calls each.

    With `flush`, it is called before every sample, outside the timed region; with
    `hold_s` > 0, `timer.hold(hold_s)` follows it, also untimed (see the module docstring).
    Returns the median, 10th and 90th percentile and mean of the per-call sample times.
    """
    if repeats < 1 or inner < 1 or warmup < 0:
        raise ValueError("repeats and inner must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    timer.synchronize()
    marks = []
    for _ in range(repeats):
        if flush is not None:
            flush()
        if hold_s > 0:
            timer.hold(hold_s)
        a = timer.mark()
        for _ in range(inner):
            fn()
        b = timer.mark()
        marks.append((a, b))
    timer.synchronize()
    samples = tuple(timer.elapsed_s(a, b) / inner for a, b in marks)
    return Measurement(
        median_s=statistics.median(samples), p10_s=percentile(samples, 10), p90_s=percentile(samples, 90),
        mean_s=statistics.fmean(samples), samples=samples, warmup=warmup, repeats=repeats, inner=inner,
        flushed=flush is not None,
    )


def auto_measure(fn: Callable[[], Any], timer: Timer, config: TimingConfig = TimingConfig(), *,
                 expected_s: float | None = None, flush: Callable[[], Any] | None = None,
                 host_clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Time `fn` with repeats chosen from its duration.

    One untimed call (compilation, allocator, cuBLAS heuristics), then one timed probe
    call; the schedule (`config.schedule`) comes from the probe's time (`expected_s` only
    where the probe reads 0), then `measure` runs with it. The first call and the probe
    count towards the warm-up. The host time of the probe call (`host_clock` around its
    enqueue, no synchronisation) sets the device hold before every sample
    (`config.hold_s`), so that host launch gaps are not timed.
    """
    h0 = host_clock()
    fn()
    first_host_s = host_clock() - h0  # may include compilation: used for the probe's hold only
    if flush is not None:
        flush()
    timer.hold(config.hold_s(first_host_s))
    a = timer.mark()
    h0 = host_clock()
    fn()
    host_s = host_clock() - h0
    b = timer.mark()
    probe = max(timer.elapsed_s(a, b), 0.0)
    t = probe if probe > 0 or expected_s is None else float(expected_s)
    warmup, repeats, inner = config.schedule(t, flush=flush is not None)
    m = measure(fn, timer, warmup=max(0, warmup - 2), repeats=repeats, inner=inner, flush=flush,
                hold_s=config.hold_s(host_s, inner))
    return Measurement(m.median_s, m.p10_s, m.p90_s, m.mean_s, m.samples, warmup=max(warmup, 2),
                       repeats=m.repeats, inner=m.inner, flushed=m.flushed)
