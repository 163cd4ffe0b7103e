"""Which kernel shapes to measure on the user's GPU, and in what order, within a time budget.

Pure Python + numpy (no torch), so `llmsim profile --dry-run` works anywhere.

What is measured (one *series* = one grid of shapes that the measured backend interpolates):

* ``gemm``: (m, n, k) for each dtype (bf16; fp8 where the GPU has it). m = tokens 1..16384,
  dense at small m, with pairs (x, x+1) at the tile boundaries 64, 128, 256 ... 4096 (the
  measured backend interpolates piecewise-linearly, so a pair reproduces a step);
  n, k = 512..65536 (powers of two to start with).
* ``context_attention``: causal prefill, (batch, isl) per (num_heads, num_kv_heads,
  head_dim), batch x isl <= 131072 tokens.
* ``generation_attention``: one-token decode over a KV cache, (batch, kv_len) per head
  configuration, batch x kv_len <= 8M tokens and within memory.
* ``elementwise``: RMSNorm and a copy, (tokens, hidden) -- memory bandwidth.
* ``collective``: NCCL all_reduce / all_gather / reduce_scatter / alltoall, (num_gpus,
  message_bytes) with 256 B .. 512 MB, only when several GPUs take part (torchrun).

How the budget is spent:

1. *Probes*: two shapes per series kind are measured first; the ratio of measured to
   predicted time (a simple roofline, `DeviceModel`) calibrates the cost estimate of
   every other shape, and their wall time the fixed per-shape overhead.
2. *Coarse grid*: each kind gets a share of the budget (`SHARES`; 60 % of it for the
   coarse grid). A series whose coarse grid costs more than its allowance is thinned:
   the interior axis value whose removal saves the most time goes first (so the
   expensive large-shape corner gets coarser, small shapes stay dense); attention head
   configurations are taken in priority order while they fit. Kinds are measured one
   after the other (GEMM first); if the earlier ones took longer than estimated, the
   later coarse grids shrink in proportion (and the per-shape overhead is re-estimated
   from the wall times), so that no grid is cut off with holes at the deadline.
3. *Refinement*, until the budget is spent: the measured series are scanned for the
   interval (between two neighbouring values of one axis) where log-linear interpolation
   is least trustworthy -- at the interval's midpoint, the chord between its two end
   nodes is compared with the straight lines through the neighbouring intervals on each
   side (the smaller of the two deviations, averaged over the other axes, so that a
   step confined to a neighbouring interval does not count, but a kink inside this one
   does). The midpoint value (rounded to a "round" number: 3-4 significant bits, e.g.
   5120, 6144, 7168, 14336) is then measured for the whole cross-section of the series,
   because the measured backend interpolates on full tensor grids and a lone point
   would leave holes. The kind furthest below its share goes first; within a kind the
   largest deviation. Intervals whose deviation is below `PlanConfig.tol` (2 %), or
   narrower than `PlanConfig.min_ratio` (hi/lo < 1.0625), are done.

Every measurement's cost is estimated as fixed overhead + initialisation + (warm-up +
repeats x inner) x predicted time (+ an L2 flush per repeat for memory-bound shapes),
with the repeat rule of `TimingConfig.schedule` -- the same rule the timing loop uses.
Given the same inputs (budget, device, seed, measured latencies) the plan is the same;
the seed only shuffles the order in which a batch is measured (so slow drifts such as
clock or temperature changes do not line up with one axis).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import checks
from ..errors import LlmsimError
from .timing import TimingConfig

__all__ = [
    "AXIS_FIELDS",
    "COLLECTIVE_OPS",
    "DEFAULT_HEADS",
    "KINDS",
    "SERIES_FIELDS",
    "SHARES",
    "DeviceModel",
    "Plan",
    "PlanConfig",
    "Planner",
    "Point",
    "make_plan",
    "simulate",
    "split_value",
]

KINDS = ("gemm", "generation_attention", "context_attention", "elementwise", "collective")  # measuring order
SERIES_FIELDS: dict[str, tuple[str, ...]] = {
    "gemm": ("dtype",),
    "context_attention": ("num_heads", "num_kv_heads", "head_dim"),
    "generation_attention": ("num_heads", "num_kv_heads", "head_dim"),
    "elementwise": ("op",),
    "collective": ("op",),
}
AXIS_FIELDS: dict[str, tuple[str, ...]] = {
    "gemm": ("m", "n", "k"),
    "context_attention": ("batch", "isl"),
    "generation_attention": ("batch", "kv_len"),
    "elementwise": ("tokens", "hidden"),
    "collective": ("num_gpus", "message_bytes"),
}
# grid step of a refined axis value (None: the axis is not refined)
AXIS_STEP: dict[str, int | None] = {
    "m": 1, "n": 64, "k": 64, "batch": 1, "isl": 1, "kv_len": 1, "tokens": 1, "hidden": None,
    "num_gpus": None, "message_bytes": 256,
}
# share of the budget per kind (renormalised over the kinds that run)
SHARES: dict[str, float] = {
    "gemm": 0.45, "context_attention": 0.2, "generation_attention": 0.2, "elementwise": 0.05, "collective": 0.1,
}
COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")

# (num_heads, num_kv_heads, head_dim) per GPU, most useful first: Llama-3 8B/70B and their
# tensor-parallel shards (GQA ratio 4 and 8), MHA, gpt-oss (head_dim 64), Gemma (256), then
# configurations that give the measured backend brackets for other ratios (it interpolates
# between head counts of one GQA ratio, or of one KV-head count).
DEFAULT_HEADS: tuple[tuple[int, int, int], ...] = (
    (32, 8, 128), (64, 8, 128), (8, 1, 128), (4, 1, 128), (32, 32, 128),
    (64, 8, 64), (8, 1, 64), (16, 8, 256), (8, 4, 256),
    (16, 4, 128), (32, 4, 128), (8, 2, 128), (16, 2, 128), (4, 4, 128), (8, 8, 128),
    (128, 8, 128), (16, 1, 128), (2, 1, 128), (1, 1, 128), (64, 64, 128),
    (32, 8, 64), (4, 1, 64), (32, 32, 64), (4, 2, 256), (2, 1, 256),
)

_MB = 1 << 20


# ------------------------------------------------------------------------------------------ points
@dataclass(frozen=True, order=True)
class Point:
    """One shape to measure: its kind, its series (e.g. ('bf16',) or (32, 8, 128)) and coordinates."""

    kind: str
    series: tuple
    coords: tuple[int, ...]

    @property
    def params(self) -> dict[str, Any]:
        return {**dict(zip(SERIES_FIELDS[self.kind], self.series)), **dict(zip(AXIS_FIELDS[self.kind], self.coords))}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Point:
        kind = d["kind"]
        return cls(kind, tuple(d[f] for f in SERIES_FIELDS[kind]), tuple(int(d[f]) for f in AXIS_FIELDS[kind]))

    def __str__(self) -> str:
        return f"{self.kind} " + " ".join(f"{k}={v}" for k, v in self.params.items())


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class PlanConfig:
    """The starting (coarse) grids, caps and refinement tolerance. Change for special needs
    (e.g. a smaller GPU, other head configurations); the defaults suit LLM serving."""

    gemm_dtypes: tuple[str, ...] = ("bf16", "fp8")
    gemm_m: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 65, 96, 128, 129, 192, 256, 257,
                               384, 512, 513, 768, 1024, 1025, 2048, 2049, 4096, 4097, 8192, 16384)
    gemm_n: tuple[int, ...] = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
    gemm_k: tuple[int, ...] = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
    gemm_weights: tuple[float, ...] = (0.6, 0.4)  # coarse allowance per gemm dtype (in order)
    attn_heads: tuple[tuple[int, int, int], ...] = DEFAULT_HEADS
    ctx_batch: tuple[int, ...] = (1, 4, 16, 64, 256)
    ctx_isl: tuple[int, ...] = (1, 16, 64, 256, 1024, 4096, 16384)
    ctx_max_tokens: int = 131072
    gen_batch: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)
    gen_kv_len: tuple[int, ...] = (1, 16, 128, 1024, 8192, 65536, 131072)
    gen_max_kv_tokens: int = 1 << 23
    elem_ops: tuple[str, ...] = ("rmsnorm", "copy")
    elem_tokens: tuple[int, ...] = (1, 16, 256, 4096, 65536)
    elem_hidden: tuple[int, ...] = (1024, 4096, 8192, 16384)
    coll_ops: tuple[str, ...] = COLLECTIVE_OPS
    coll_bytes: tuple[int, ...] = tuple(256 * 4**i for i in range(11)) + (512 * _MB,)
    memory_fraction: float = 0.45  # most of the device memory one shape may allocate
    coarse_fraction: float = 0.6  # of each kind's share, for the coarse grid
    reserve_fraction: float = 0.03  # of the budget, kept for start-up and writing
    tol: float = 0.02  # |log deviation| below which an interval is not refined
    min_ratio: float = 1.0625  # intervals narrower than this (hi / lo) are not split

    def axes(self, kind: str) -> tuple[tuple[int, ...], ...]:
        return {
            "gemm": (self.gemm_m, self.gemm_n, self.gemm_k),
            "context_attention": (self.ctx_batch, self.ctx_isl),
            "generation_attention": (self.gen_batch, self.gen_kv_len),
            "elementwise": (self.elem_tokens, self.elem_hidden),
        }[kind]


def check_seed(seed: Any) -> int:
    """The profiler's seed (it only shuffles the measuring order): an integer >= 0."""
    return checks.check_seed(seed, hint="e.g. --seed 0 (it only shuffles the order of the measurements)")


# ------------------------------------------------------------------------------------------ device model
@dataclass(frozen=True)
class DeviceModel:
    """A rough roofline of the GPU, to predict each shape's time (and so its cost) before it is
    measured. Calibrated on the probes; the defaults are an H100 SXM."""

    name: str = "NVIDIA H100 80GB HBM3"
    bf16_flops: float = 989.4e12
    fp8_flops: float | None = 1978.9e12
    mem_bw: float = 3.35e12
    memory_bytes: float = 79.6 * 2**30
    l2_bytes: float = 50 * _MB
    link_bw: float = 450e9
    compute_eff: float = 0.7
    attn_eff: float = 0.5
    mem_eff: float = 0.8
    launch_s: float = 5e-6
    overhead_s: float = 3e-3  # host time per shape: allocation, initialisation, synchronisation

    @property
    def supports_fp8(self) -> bool:
        return bool(self.fp8_flops)

    @classmethod
    def from_gpu(cls, spec: Any) -> DeviceModel:
        """From a catalog `GPUSpec`."""
        tf = spec.peak_tflops
        link = spec.nvlink_bandwidth_gbps or spec.pcie_bandwidth_gbps
        return cls(name=spec.display_name or spec.name, bf16_flops=tf.get("bf16", tf.get("fp16", 100.0)) * 1e12,
                   fp8_flops=tf["fp8"] * 1e12 if tf.get("fp8") else None, mem_bw=spec.memory_bandwidth_gbps * 1e9,
                   memory_bytes=spec.memory_gib * 2**30, link_bw=link * 1e9)

    @classmethod
    def lookup(cls, name: str | None, *, strict: bool = False) -> DeviceModel:
        """A catalog GPU id ('h100-sxm', 'l40s') or a device name as torch reports it
        ('NVIDIA H100 80GB HBM3'); an unknown name gets the H100 defaults under that name, or
        with `strict` (what a dry-run plan for a named GPU uses) an LlmsimError listing the known ones."""
        if not name:
            return cls()
        from ..cost.measured import device_matches
        from ..hardware import get_gpu, list_gpus

        try:
            return cls.from_gpu(get_gpu(str(name)))
        except LlmsimError:
            pass
        for spec in list_gpus():
            if device_matches(str(name), spec):
                return cls.from_gpu(spec)
        if strict:
            raise LlmsimError(f"unknown device {str(name)!r} (--device) to plan a profile for",
                              hint=f"use a catalog GPU id ({', '.join(g.name for g in list_gpus())}) or a device name as "
                                   "torch reports it (e.g. 'NVIDIA H100 80GB HBM3'); leave --device out for an H100 SXM")
        return cls(name=str(name))

    def with_(self, **kw: Any) -> DeviceModel:
        d = asdict(self)
        d.update(kw)
        return DeviceModel(**d)

    # vectorised predictions: (seconds, memory-bound?, bytes allocated)
    def predict(self, kind: str, series: tuple, X: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = [np.asarray(x, dtype=np.float64) for x in X]
        if kind == "gemm":
            (dt,) = series
            m, n, k = X
            fp8 = dt == "fp8"
            e = 1.0 if fp8 else 2.0
            peak = (self.fp8_flops or 2 * self.bf16_flops) if fp8 else self.bf16_flops
            tc = 2 * m * n * k / (peak * self.compute_eff)
            tm = ((m * k + n * k) * e + 2 * m * n) / (self.mem_bw * self.mem_eff)
            foot = (m * k + n * k) * (e + (2.0 if fp8 else 0.0)) + 2 * m * n
            return self.launch_s + np.maximum(tc, tm), tm >= tc, foot
        if kind == "context_attention":
            h, kvh, d = (float(v) for v in series)
            b, s = X
            tc = 2 * b * s * s * h * d / (self.bf16_flops * self.attn_eff)  # causal: half of 4 b s^2 h d
            byts = b * s * (2 * h + 2 * kvh) * d * 2
            tm = byts / (self.mem_bw * self.mem_eff)
            return 2 * self.launch_s + np.maximum(tc, tm), tm >= tc, byts + b * s * 2 * h * d * 2
        if kind == "generation_attention":
            h, kvh, d = (float(v) for v in series)
            b, L = X
            kv = 2 * b * L * kvh * d * 2
            tm = (kv + 4 * b * h * d) / (self.mem_bw * self.mem_eff)
            tc = 4 * b * L * h * d / (self.bf16_flops * self.attn_eff)
            return 2 * self.launch_s + np.maximum(tc, tm), np.ones_like(tm, dtype=bool), kv + 4 * b * h * d * 2
        if kind == "elementwise":
            t, hd = X
            byts = 2 * t * hd * 2 + hd * 2
            return self.launch_s + byts / (self.mem_bw * self.mem_eff), np.ones_like(t, dtype=bool), byts
        if kind == "collective":
            (op,) = series
            g, S = X
            frac = np.where(g > 1, (g - 1) / np.maximum(g, 1), 0.0)
            factor = 2 * frac if op == "all_reduce" else frac
            t = 10e-6 + 4e-6 * np.log2(np.maximum(g, 1)) + factor * S / self.link_bw
            return t, np.zeros_like(t, dtype=bool), 2.0 * S
        raise LlmsimError(f"unknown kernel kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")

    def flush_s(self) -> float:
        return self.launch_s + 2 * self.l2_bytes / (self.mem_bw * self.mem_eff)


def _timed_s(t: np.ndarray, flush: np.ndarray, timing: TimingConfig, flush_s: float) -> np.ndarray:
    """Vectorised cost of `auto_measure` for kernels of time t (see TimingConfig.schedule)."""
    t = np.maximum(t, 1e-7)
    warm = np.where(t >= timing.long_kernel_s, 1, timing.warmup)
    inner = np.where(flush, 1, np.clip(np.ceil(timing.min_sample_s / t - 1e-9), 1, timing.max_inner))
    reps = np.clip(np.ceil(timing.target_s / (t * inner) - 1e-9), timing.min_repeats, timing.max_repeats)
    calls = np.maximum(warm, 2) + reps * inner
    return calls * t + np.where(flush, (reps + 1) * flush_s, 0.0)


# ------------------------------------------------------------------------------------------ helpers
def split_value(lo: int, hi: int, step: int | None) -> int | None:
    """A 'round' value strictly between lo and hi near their geometric mean, or None.

    Rounded to the fewest significant bits (at least 2) that land strictly inside, and to
    a multiple of `step`: 4096..8192 -> 6144, 4096..6144 -> 5120, 6144..8192 -> 7168,
    2..4 -> 3, 64..65 -> None.
    """
    if step is None or hi - lo < 2 * step:
        return None
    g = math.sqrt(lo * hi)
    for bits in range(2, 24):
        q = max(step, 2 ** max(0, math.floor(math.log2(g)) - bits + 1))
        q = step * max(1, round(q / step))
        v = int(round(g / q) * q)
        if lo < v < hi:
            return v
        if q == step:
            break
    v = int(round(g / step) * step)
    return v if lo < v < hi else None


def _grid(axes: Sequence[Sequence[float]]) -> list[np.ndarray]:
    return [a.astype(np.float64) for a in np.meshgrid(*[np.asarray(x, dtype=np.float64) for x in axes], indexing="ij")]


class _Series:
    """One grid being measured: axis values (sorted) and the log latency of measured shapes."""

    def __init__(self, kind: str, key: tuple, axes: Sequence[Sequence[int]], weight: float | None, priority: int):
        self.kind = kind
        self.key = tuple(key)
        self.axes: list[list[int]] = [sorted({int(v) for v in a}) for a in axes]
        self.weight = weight
        self.priority = priority
        self.values: dict[tuple[int, ...], float] = {}  # coords -> log latency (nan: failed)
        self.protected: list[set[int]] = [set() for _ in self.axes]
        self.active = False  # part of the plan (coarse grid chosen)
        self._cache: list | None = None
        self._L: np.ndarray | None = None

    def log_grid(self) -> np.ndarray:
        if self._L is not None:
            return self._L
        L = np.full([len(a) for a in self.axes], np.nan)
        idx = [{v: i for i, v in enumerate(a)} for a in self.axes]
        for c, v in self.values.items():
            try:
                L[tuple(ix[x] for ix, x in zip(idx, c))] = v
            except KeyError:  # measured off the current grid (a probe on a thinned axis)
                pass
        self._L = L
        return L

    def set_axis(self, d: int, values: Sequence[int]) -> None:
        self.axes[d] = sorted({int(v) for v in values})
        self._L = None
        self._cache = None

    def set_value(self, coords: tuple[int, ...], logt: float) -> None:
        self.values[coords] = logt
        self._cache = None
        if self._L is not None:
            try:
                self._L[tuple(a.index(x) for a, x in zip(self.axes, coords))] = logt
            except ValueError:
                pass


# ------------------------------------------------------------------------------------------ planner
class Planner:
    """Chooses the shapes to measure, within `budget_s` seconds, adaptively.

    Use: ``probes()`` -> measure, ``record`` each -> ``calibrate()`` -> ``initial()`` ->
    measure, ``record`` each -> ``next_batch()`` -> ... until it returns []. `record`
    takes the measured median (None: the shape failed, e.g. out of memory) and the wall
    time the measurement took (None: the estimate is charged instead).
    """

    def __init__(self, budget_s: float, device: DeviceModel | None = None, *, world_size: int = 1, seed: int = 0,
                 kinds: Iterable[str] | None = None, config: PlanConfig | None = None,
                 timing: TimingConfig | None = None):
        if not (budget_s > 0 and math.isfinite(budget_s)):
            raise LlmsimError(f"the profiling budget must be a positive number of seconds, got {budget_s}")
        self.budget_s = float(budget_s)
        self.device = device or DeviceModel()
        self.world_size = int(world_size)
        self.seed = check_seed(seed)
        self.config = config or PlanConfig()
        self.timing = timing or TimingConfig()
        want = tuple(KINDS if kinds is None else kinds)
        bad = [k for k in want if k not in KINDS]
        if bad:
            raise LlmsimError(f"unknown kernel kind(s) {', '.join(map(repr, bad))}", hint=f"use {', '.join(KINDS)}")
        if self.world_size < 2:
            want = tuple(k for k in want if k != "collective")
        self.kinds = tuple(k for k in KINDS if k in want)
        tot = sum(SHARES[k] for k in self.kinds) or 1.0
        self.shares = {k: SHARES[k] / tot for k in self.kinds}
        self.usable_s = self.budget_s * (1.0 - self.config.reserve_fraction)
        self.scale: dict[str, float] = {k: 1.0 for k in self.kinds}
        self.overhead_s = self.device.overhead_s
        self.spent_s = 0.0
        self.spent_by_kind: dict[str, float] = {k: 0.0 for k in self.kinds}
        self.phase_points: dict[str, int] = {"probe": 0, "coarse": 0, "refine": 0}
        self.refinements: list[dict] = []
        self._rng = random.Random(self.seed)
        self._probes: list[Point] = []
        self._walls: dict[Point, float] = {}
        self._est: dict[Point, float] = {}
        self._overhead_obs: list[float] = []
        self._started: set[str] = set()
        self._phase = "probe"
        self.series: dict[tuple[str, tuple], _Series] = {}
        self._build_series()

    # ---------------------------------------------------------------- series
    def _build_series(self) -> None:
        cfg = self.config
        for kind in self.kinds:
            if kind == "gemm":
                dts = [d for d in cfg.gemm_dtypes if d != "fp8" or self.device.supports_fp8]
                ws = list(cfg.gemm_weights[:len(dts)])
                if len(dts) == 1:
                    ws = [1.0]
                tot = sum(ws) or 1.0
                for i, (dt, w) in enumerate(zip(dts, ws)):
                    self._add(kind, (dt,), cfg.axes(kind), w / tot, i)
            elif kind in ("context_attention", "generation_attention"):
                for i, hk in enumerate(cfg.attn_heads):
                    self._add(kind, tuple(int(x) for x in hk), cfg.axes(kind), None, i)
            elif kind == "elementwise":
                for i, op in enumerate(cfg.elem_ops):
                    self._add(kind, (op,), cfg.axes(kind), 1.0 / len(cfg.elem_ops), i)
            elif kind == "collective":
                gs = [g for g in (2**i for i in range(1, 12)) if g <= self.world_size]
                for i, op in enumerate(cfg.coll_ops):
                    self._add(kind, (op,), (tuple(gs), cfg.coll_bytes), 1.0 / len(cfg.coll_ops), i)

    def _add(self, kind: str, key: tuple, axes, weight, priority) -> None:
        self.series[(kind, key)] = _Series(kind, key, axes, weight, priority)

    def _kind_series(self, kind: str) -> list[_Series]:
        return sorted((s for s in self.series.values() if s.kind == kind), key=lambda s: s.priority)

    # ---------------------------------------------------------------- cost model
    def _feasible(self, kind: str, key: tuple, X: Sequence[np.ndarray], foot: np.ndarray) -> np.ndarray:
        ok = foot <= self.device.memory_bytes * self.config.memory_fraction
        if kind == "context_attention":
            ok &= X[0] * X[1] <= self.config.ctx_max_tokens
        elif kind == "generation_attention":
            ok &= X[0] * X[1] <= self.config.gen_max_kv_tokens
        elif kind == "collective":
            ok &= X[0] <= self.world_size
        return ok

    def _costs(self, kind: str, key: tuple, X: Sequence[np.ndarray], pred: np.ndarray | None = None):
        """(cost seconds, predicted kernel seconds, feasible) over coordinate arrays X."""
        t, mb, foot = self.device.predict(kind, key, X)
        t = t * self.scale.get(kind, 1.0)
        if pred is not None:
            t = np.where(np.isfinite(pred), pred, t)
        ok = self._feasible(kind, key, X, foot)
        setup = foot / (self.device.mem_bw * 0.3)
        flush = mb & (kind != "collective")
        cost = self.overhead_s + setup + _timed_s(t, flush, self.timing, self.device.flush_s())
        return cost, t, ok

    def predict_s(self, p: Point) -> float:
        """Predicted kernel time of one shape (calibrated roofline)."""
        t, _, _ = self.device.predict(p.kind, p.series, [np.asarray(c, dtype=np.float64) for c in p.coords])
        return float(t) * self.scale.get(p.kind, 1.0)

    def cost_s(self, p: Point) -> float:
        """Estimated wall time of measuring one shape."""
        c, _, _ = self._costs(p.kind, p.series, [np.array([c], dtype=np.float64) for c in p.coords])
        return float(c[0])

    def is_memory_bound(self, p: Point) -> bool:
        """Whether the shape streams from HBM (timed with an L2 flush between repeats)."""
        if p.kind == "collective":
            return False
        _, mb, _ = self.device.predict(p.kind, p.series, [np.array([c], dtype=np.float64) for c in p.coords])
        return bool(mb[0])

    def feasible(self, p: Point) -> bool:
        X = [np.array([c], dtype=np.float64) for c in p.coords]
        _, _, foot = self.device.predict(p.kind, p.series, X)
        return bool(self._feasible(p.kind, p.series, X, foot)[0])

    @property
    def remaining_s(self) -> float:
        return self.usable_s - self.spent_s

    # ---------------------------------------------------------------- probes / calibration
    def probes(self) -> list[Point]:
        """Two shapes per kind (on the first series' coarse grid, at 1/3 and 2/3 of each axis)."""
        out: list[Point] = []
        for kind in self.kinds:
            if kind == "collective":
                continue
            ss = self._kind_series(kind)
            if not ss:
                continue
            s = ss[0]
            for q in (1 / 3, 2 / 3):
                c = tuple(a[min(len(a) - 1, round(q * (len(a) - 1)))] for a in s.axes)
                p = Point(kind, s.key, c)
                if self.feasible(p) and p not in out:
                    out.append(p)
                    for d, v in enumerate(c):
                        s.protected[d].add(v)
        self._probes = out
        return list(out)

    def calibrate(self) -> None:
        """Scale the roofline of each kind by the probes' measured / predicted time, and take
        the per-shape overhead from their wall time (beyond the time spent timing them)."""
        ratios: dict[str, list[float]] = {}
        overheads: list[float] = []
        for p in self._probes:
            v = self.series[(p.kind, p.series)].values.get(p.coords)
            if v is None or not math.isfinite(v):
                continue
            t = math.exp(v)
            X = [np.array([c], dtype=np.float64) for c in p.coords]
            base = self.device.predict(p.kind, p.series, X)[0][0]
            ratios.setdefault(p.kind, []).append(t / base)
            if p in self._walls:
                cost, _, _ = self._costs(p.kind, p.series, X, pred=np.array([t]))
                overheads.append(self._walls[p] - (float(cost[0]) - self.overhead_s))
        for k, r in ratios.items():
            self.scale[k] = float(min(1e3, max(1e-2, np.median(r))))
        if overheads:  # the lower quartile: the first shape of each kind also pays one-off set-up
            self.overhead_s = float(min(1.0, max(1e-4, np.percentile(overheads, 25))))

    # ---------------------------------------------------------------- coarse grid
    def _thin(self, s: _Series, allowance: float) -> float:
        """Drop axis values of `s` until its coarse grid costs at most `allowance`; returns its cost."""
        while True:
            X = _grid(s.axes)
            cost, _, ok = self._costs(s.kind, s.key, X)
            cost = np.where(ok, cost, 0.0)
            total = float(cost.sum())
            if total <= allowance:
                return total
            best = None  # (saving, axis, index)
            for d, a in enumerate(s.axes):
                if len(a) <= 2:
                    continue
                sav = cost.sum(axis=tuple(i for i in range(cost.ndim) if i != d))
                for i in range(1, len(a) - 1):
                    if a[i] in s.protected[d]:
                        continue
                    if best is None or sav[i] > best[0]:
                        best = (float(sav[i]), d, i)
            if best is None:  # only end values left: shrink the range at the top
                for d, a in enumerate(s.axes):
                    if len(a) <= 1 or a[-1] in s.protected[d] or AXIS_FIELDS[s.kind][d] == "num_gpus":
                        continue
                    sav = cost.sum(axis=tuple(i for i in range(cost.ndim) if i != d))
                    if best is None or sav[-1] > best[0]:
                        best = (float(sav[-1]), d, len(a) - 1)
            if best is None or best[0] <= 0:
                return total
            s.set_axis(best[1], [x for i, x in enumerate(s.axes[best[1]]) if i != best[2]])

    def initial(self, kinds: Iterable[str] | None = None) -> list[Point]:
        """The coarse grid of `kinds` (default: every kind not started yet), each fitted to its
        allowance; shapes already measured are left out.

        Called one kind at a time (as the measuring loop does), each allowance is scaled by
        how the budget has gone so far: if the earlier kinds took longer than planned, the
        later coarse grids shrink instead of being cut off by the deadline. The per-shape
        overhead is re-estimated from the wall times recorded so far.
        """
        self._phase = "coarse"
        self._update_overhead()
        todo = [k for k in (self.kinds if kinds is None else kinds) if k in self.kinds and k not in self._started]
        planned_left = self.usable_s * (1.0 - self.config.coarse_fraction * sum(self.shares[k] for k in self._started))
        ratio = min(1.0, max(0.0, self.remaining_s / planned_left)) if planned_left > 0 else 0.0
        out: list[Point] = []
        for kind in todo:
            self._started.add(kind)
            allowance = self.usable_s * ratio * self.shares[kind] * self.config.coarse_fraction
            used = 0.0
            for j, s in enumerate(self._kind_series(kind)):
                if s.weight is not None:
                    used += self._thin(s, allowance * s.weight)
                    s.active = True
                    continue
                X = _grid(s.axes)
                cost, _, ok = self._costs(s.kind, s.key, X)
                c = float(np.where(ok, cost, 0.0).sum())
                if used + c <= allowance:
                    used += c
                    s.active = True
                elif j == 0:
                    used += self._thin(s, allowance)
                    s.active = True
                else:
                    break
            pts = [p for s in self._kind_series(kind) if s.active for p in self._slice_points(s, s.axes)]
            self._rng.shuffle(pts)
            out.extend(pts)
        return out

    # ---------------------------------------------------------------- results
    def record(self, p: Point, latency_s: float | None, wall_s: float | None = None) -> None:
        """A measured median (seconds; None or <= 0: failed) and the wall time it took."""
        s = self.series.get((p.kind, p.series))
        if s is None:
            raise LlmsimError(f"{p} is not part of this plan")
        if latency_s is not None and math.isfinite(latency_s) and latency_s > 0:
            ok, log_latency = True, math.log(latency_s)
        else:
            ok, log_latency = False, float("nan")
        s.set_value(p.coords, log_latency)
        est = self._est.pop(p, None)
        c = float(wall_s) if wall_s is not None else (est if est is not None else self.cost_s(p))
        self.spent_s += c
        self.spent_by_kind[p.kind] = self.spent_by_kind.get(p.kind, 0.0) + c
        self.phase_points[self._phase] = self.phase_points.get(self._phase, 0) + 1
        if wall_s is not None:
            if self._phase == "probe":
                self._walls[p] = float(wall_s)
            elif ok:  # wall time beyond the estimated initialisation and timed calls: overhead
                X = [np.array([x], dtype=np.float64) for x in p.coords]
                cost, _, _ = self._costs(p.kind, p.series, X, pred=np.array([latency_s]))
                self._overhead_obs.append(float(wall_s) - (float(cost[0]) - self.overhead_s))

    def _update_overhead(self) -> None:
        if len(self._overhead_obs) >= 5:
            self.overhead_s = float(min(1.0, max(1e-4, np.median(self._overhead_obs))))

    def measured(self) -> dict[Point, float]:
        """Every successful measurement on the current grids (seconds)."""
        out = {}
        for s in self.series.values():
            axes = [set(a) for a in s.axes]
            for c, v in s.values.items():
                if math.isfinite(v) and all(x in a for x, a in zip(c, axes)):
                    out[Point(s.kind, s.key, c)] = math.exp(v)
        return out

    def on_grid(self, p: Point) -> bool:
        """Whether a shape lies on its series' final grid (off-grid probes are not written)."""
        s = self.series.get((p.kind, p.series))
        return s is not None and s.active and all(x in a for x, a in zip(p.coords, s.axes))

    def _slice_points(self, s: _Series, axes: Sequence[Sequence[int]], refined_axis: int | None = None) -> list[Point]:
        """Feasible, not yet measured shapes of `s` on the grid `axes`; their estimated cost is kept
        (charged by `record` when no wall time is given)."""
        X = _grid(axes)
        if not X[0].size:
            return []
        pred = None
        if refined_axis is not None:  # a new slice: predict from the measured neighbours where possible
            d = refined_axis
            L = s.log_grid()
            j = s.axes[d].index(axes[d][0])
            if 0 < j < len(s.axes[d]) - 1:
                lo, hi = np.take(L, j - 1, axis=d), np.take(L, j + 1, axis=d)
                lx = np.log(np.asarray(s.axes[d], dtype=np.float64))
                f = (lx[j] - lx[j - 1]) / (lx[j + 1] - lx[j - 1])
                pred = np.expand_dims(np.exp(lo + (hi - lo) * f), d)
        cost, _, ok = self._costs(s.kind, s.key, X, pred=pred)
        out = []
        for ix in zip(*np.nonzero(ok)):
            c = tuple(int(X[i][ix]) for i in range(len(X)))
            if c in s.values:
                continue
            p = Point(s.kind, s.key, c)
            self._est[p] = float(cost[ix])
            out.append(p)
        return out

    # ---------------------------------------------------------------- refinement
    def _candidates(self, s: _Series) -> list[tuple[float, float, float, int, int]]:
        """(score, -log width, cost, axis, new value) of every refinable interval of `s`."""
        if s._cache is not None:
            return s._cache
        L = s.log_grid()
        cands = []
        for d, a in enumerate(s.axes):
            step = AXIS_STEP[AXIS_FIELDS[s.kind][d]]
            n = len(a)
            if step is None or n < 2:
                continue
            vals = [split_value(a[j], a[j + 1], step) if a[j + 1] >= a[j] * self.config.min_ratio else None
                    for j in range(n - 1)]
            if all(v is None for v in vals):
                continue
            # score every interval (unsplittable ones at their geometric midpoint: their scores
            # decide whether a one-sided neighbour's line can be trusted)
            J = np.arange(n - 1)
            lx = np.log(np.asarray(a, dtype=np.float64))
            xm = np.array([math.log(v) if v is not None else 0.5 * (lx[j] + lx[j + 1]) for j, v in enumerate(vals)])
            Lm = np.moveaxis(L, d, 0)
            sh = (len(J),) + (1,) * (Lm.ndim - 1)
            x0, x1 = lx[J].reshape(sh), lx[J + 1].reshape(sh)
            xmr = xm.reshape(sh)
            y0, y1 = Lm[J], Lm[J + 1]
            chord = y0 + (y1 - y0) * (xmr - x0) / (x1 - x0)
            with np.errstate(invalid="ignore", divide="ignore"):
                # straight lines through the neighbouring intervals, extended to the midpoint
                Jl = np.maximum(J - 1, 0)
                xl = lx[Jl].reshape(sh)
                left = y0 + (y0 - Lm[Jl]) * (xmr - x0) / (x0 - xl)
                left[J < 1] = np.nan
                Jr = np.minimum(J + 2, n - 1)
                xr = lx[Jr].reshape(sh)
                right = y1 + (Lm[Jr] - y1) * (xmr - x1) / (xr - x1)
                right[J + 2 >= n] = np.nan
                dev = np.fmin(np.abs(left - chord), np.abs(right - chord))
            flat = dev.reshape(len(J), -1)
            fin = np.isfinite(flat)
            cnt = fin.sum(axis=1)
            score = np.where(cnt > 0, np.where(fin, flat, 0.0).sum(axis=1) / np.maximum(cnt, 1), np.nan)
            if n == 2:  # nothing to compare with: split a wide 2-value axis once
                has = np.isfinite(chord.reshape(len(J), -1)).any(axis=1)
                score = np.where(np.isnan(score) & has, 2 * self.config.tol, score)
            else:
                # an end interval has a line on one side only: trust it only once that neighbour
                # interval is itself well interpolated (else a kink there would be blamed on this one)
                tol = self.config.tol
                if not (score[1] < tol):
                    score[0] = np.nan
                if not (score[n - 3] < tol):
                    score[n - 2] = np.nan
            keep = np.array([v is not None for v in vals])
            J, score, chord = J[keep], score[keep], chord[keep]
            V = np.array([v for v in vals if v is not None], dtype=np.int64)
            # cost of each new slice (every feasible shape with value V[j] on axis d)
            new_axes = [list(x) for x in s.axes]
            new_axes[d] = [int(v) for v in V]
            X = _grid(new_axes)
            pred = np.moveaxis(np.exp(chord), 0, d)
            cost, _, ok = self._costs(s.kind, s.key, X, pred=pred)
            other = tuple(i for i in range(cost.ndim) if i != d)
            csum = np.where(ok, cost, 0.0).sum(axis=other) if other else np.where(ok, cost, 0.0)
            anyok = ok.any(axis=other) if other else ok
            for i, j in enumerate(J):
                if anyok[i] and np.isfinite(score[i]):
                    cands.append((float(score[i]), -float(lx[j + 1] - lx[j]), float(csum[i]), d, int(V[i])))
        s._cache = cands
        return cands

    def next_batch(self) -> list[Point]:
        """The next slice to measure (shapes of one new axis value of one series), or [] when done."""
        self._phase = "refine"
        rem = self.remaining_s
        if rem <= 0:
            return []
        order = sorted(self.kinds, key=lambda k: (self.spent_by_kind.get(k, 0.0) / self.shares[k], KINDS.index(k)))
        for kind in order:
            best = None
            for s in self._kind_series(kind):
                if not s.active:
                    continue
                for score, negw, cost, d, v in self._candidates(s):
                    if score < self.config.tol or cost > rem:
                        continue
                    key = (score, negw, -cost)
                    if best is None or key > best[0]:
                        best = (key, s, d, v)
            if best is None:
                continue
            _, s, d, v = best
            s.set_axis(d, s.axes[d] + [v])
            new_axes = [list(x) for x in s.axes]
            new_axes[d] = [v]
            pts = self._slice_points(s, new_axes, refined_axis=d)
            self.refinements.append({"kind": kind, "series": list(s.key), "axis": AXIS_FIELDS[kind][d], "value": v,
                                     "score": round(best[0][0], 4), "points": len(pts)})
            self._rng.shuffle(pts)
            return pts
        return []

    # ---------------------------------------------------------------- description
    def summary(self) -> dict:
        kinds = {}
        for kind in self.kinds:
            ss = [s for s in self._kind_series(kind) if s.active]
            kinds[kind] = {
                "series": [list(s.key) for s in ss],
                "axes": {" ".join(map(str, s.key)): {f: list(a) for f, a in zip(AXIS_FIELDS[kind], s.axes)} for s in ss},
                "points": sum(1 for s in ss for v in s.values.values() if math.isfinite(v)),
                "spent_s": round(self.spent_by_kind.get(kind, 0.0), 3),
                "share": round(self.shares[kind], 4),
                "scale": round(self.scale.get(kind, 1.0), 4),
            }
        return {"budget_s": self.budget_s, "spent_s": round(self.spent_s, 3), "overhead_s": self.overhead_s,
                "points_by_phase": dict(self.phase_points), "refinements": len(self.refinements), "kinds": kinds}


# ------------------------------------------------------------------------------------------ dry run
@dataclass
class Plan:
    """What a profile run would measure (from `make_plan`): the probe and coarse shapes,
    the refinement that the device model alone would trigger, and their estimated time."""

    device: str
    budget_s: float
    world_size: int
    seed: int
    probes: list[Point]
    coarse: list[Point]
    refine: list[Point]
    estimated_s: float
    by_kind: dict[str, dict] = field(default_factory=dict)

    @property
    def points(self) -> list[Point]:
        return self.probes + self.coarse + self.refine

    def to_dict(self) -> dict:
        def group(points: list[Point]) -> dict:
            out: dict[str, dict] = {}
            for p in points:
                k = " ".join([p.kind, *map(str, p.series)])
                e = out.setdefault(k, {"kind": p.kind, **dict(zip(SERIES_FIELDS[p.kind], p.series)),
                                       "axes": list(AXIS_FIELDS[p.kind]), "shapes": []})
                e["shapes"].append(list(p.coords))
            return out

        return {
            "device": self.device, "budget_s": self.budget_s, "world_size": self.world_size, "seed": self.seed,
            "estimated_s": round(self.estimated_s, 2), "by_kind": self.by_kind,
            "probe": group(self.probes), "coarse": group(self.coarse), "refine": group(self.refine),
        }

    def describe(self) -> str:
        lines = [(f"profile plan for {self.device}: budget {self.budget_s / 60:.1f} min, {len(self.points)} shapes, "
                  f"estimated {self.estimated_s / 60:.1f} min (world size {self.world_size}, seed {self.seed})")]
        for kind, d in self.by_kind.items():
            lines.append(f"  {kind:21s} {d['series']:3d} series  {d['probe'] + d['coarse']:5d} coarse + "
                         f"{d['refine']:5d} refined shapes  ~{d['estimated_s']:7.1f} s")
        lines.append("  (refinement follows the measured curves; the count here is what the roofline alone triggers)")
        return "\n".join(lines)


def simulate(planner: Planner, latency: Callable[[Point], float | None]) -> tuple[list[Point], list[Point], list[Point]]:
    """Run the planner's loop with a latency function instead of a GPU: (probes, coarse, refined)."""
    probes = planner.probes()
    for p in probes:
        planner.record(p, latency(p))
    planner.calibrate()
    coarse = planner.initial()
    for p in coarse:
        planner.record(p, latency(p))
    refined: list[Point] = []
    while True:
        batch = planner.next_batch()
        if not batch:
            break
        for p in batch:
            planner.record(p, latency(p))
        refined.extend(batch)
    return probes, coarse, refined


def make_plan(budget_minutes: float = 15.0, device: str | DeviceModel | None = None, *, world_size: int = 1,
              seed: int = 0, kinds: Iterable[str] | None = None, config: PlanConfig | None = None,
              timing: TimingConfig | None = None) -> Plan:
    """The plan of a profile run on `device` (catalog id, device name or DeviceModel), without a GPU.

    The refinement is simulated with the device model's own predictions (so it shows
    where the roofline bends); on the real GPU it follows the measured curves instead.
    """
    if device is not None and not isinstance(device, (str, DeviceModel)):
        raise LlmsimError(f"the device to plan for must be a catalog GPU id or a device name, got {device!r}",
                          hint="e.g. 'h100-sxm' or 'NVIDIA H100 80GB HBM3'; None for an H100 SXM")
    dev = device if isinstance(device, DeviceModel) else DeviceModel.lookup(device, strict=True)
    pl = Planner(float(budget_minutes) * 60.0, dev, world_size=world_size, seed=seed, kinds=kinds, config=config,
                 timing=timing)
    probes, coarse, refine = simulate(pl, pl.predict_s)
    by_kind: dict[str, dict] = {}
    for kind in pl.kinds:
        by_kind[kind] = {
            "series": sum(1 for s in pl.series.values() if s.kind == kind and s.active),
            "probe": sum(1 for p in probes if p.kind == kind),
            "coarse": sum(1 for p in coarse if p.kind == kind),
            "refine": sum(1 for p in refine if p.kind == kind),
            "estimated_s": round(pl.spent_by_kind.get(kind, 0.0), 2),
        }
    return Plan(dev.name, pl.budget_s, pl.world_size, pl.seed, probes, coarse, refine, pl.spent_s, by_kind)
