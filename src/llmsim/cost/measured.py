"""Measured-kernel backend: interpolate per-kernel latency tables measured on real GPUs.

The tables are in the format of NVIDIA's AIConfigurator (ai-dynamo/aiconfigurator,
Apache-2.0): one row per measured kernel call, latency in milliseconds. Five kinds
are understood:

* GEMM (``m, n, k, gemm_dtype``; one table per framework: TRT-LLM, vLLM),
* context / prefill attention (``batch_size, isl, num_heads, num_key_value_heads,
  head_dim, window_size, attn_dtype, kv_cache_dtype``),
* generation / decode attention (same, with ``step``; the KV length is
  ``isl + step``, i.e. 2, 4, 8 ... tokens for ``isl = 1``, as AIConfigurator reads it),
* NCCL collectives (``op_name, message_size`` *elements* of ``nccl_dtype``, ``num_gpus``),
* TRT-LLM custom all-reduce (``message_size`` elements of ``allreduce_dtype``).

Loading turns each table into dense grids (one per key such as (framework, dtype)
or (dtypes, head_dim, window, heads, kv heads)) of latency in **seconds**, NaN where
nothing was measured; repeated measurements of one point are reduced to their
median. Each key keeps its own axes (the grid values it measured). Lookups work in
log space (log of every axis value -> log latency), in pure Python on precomputed
flat arrays (about 5-15 microseconds per call):

* GEMM: trilinear in (log m, log n, log k). n and k lie on a 22-value grid (32 ...
  65536); m is dense (1-17, then pairs x, x+1 for x = 32, 48 ... 256, 512, 768 ...
  4352, then 8192, 16384, 32768). The pairs bracket tile/alignment steps (e.g. vLLM
  fp8, n = k = 4096: 19 us at m = 512, 35 us at m = 513), so piecewise-linear
  interpolation reproduces the step instead of smoothing it; a held-out check showed
  cubic interpolation does not help here.
* attention and collectives (2-D: (batch, sequence) or (num_gpus, bytes)): monotone
  cubic Hermite (PCHIP) along each axis. On these curved tables it lowered the
  leave-one-slice-out median error compared with linear (context attention about
  3.2% -> 2.0%, generation 2.9% -> 2.6%, NCCL 3.2% -> 2.5%).

A query outside the measured hull, or whose interpolation cell touches an
unmeasured point, returns ``None`` so that the caller can fall back to the roofline.
(2-D cells with exactly one unmeasured corner, on the ragged edge of the measured
attention region, are interpolated on the triangle of the other three.)

The bundled tables (``llmsim/kernels_data/h100``) are the H100 SXM tables from
ai-dynamo/aiconfigurator (systems/data/h100_sxm), Apache-2.0; see the NOTICE
file there. ``benchmarks/build_kernel_bundle.py`` regenerates them and
``benchmarks/validate_measured.py`` measures the held-out interpolation error.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..dtypes import BYTES_PER_ELEMENT, canonical
from ..errors import LlmsimError

__all__ = ["KernelTables", "TABLE_KINDS", "BUNDLE_FILENAME", "ATTRIBUTION"]

BUNDLE_FILENAME = "kernel_tables.npz"
BUNDLE_FORMAT = "llmsim-kernel-tables"
BUNDLE_VERSION = 1
ATTRIBUTION = "Kernel latency tables from ai-dynamo/aiconfigurator (systems/data/h100_sxm), Apache-2.0"

TABLE_KINDS = ("gemm", "context_attention", "generation_attention", "collective")

# Columns that identify one grid (key) and the grid's axes, per table kind.
_KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "gemm": ("framework", "dtype"),
    "context_attention": ("framework", "attn_dtype", "kv_dtype", "head_dim", "window", "num_heads", "num_kv_heads"),
    "generation_attention": ("framework", "kv_dtype", "head_dim", "window", "num_heads", "num_kv_heads"),
    "collective": ("implementation", "op", "dtype"),
}
_AXIS_FIELDS: dict[str, tuple[str, ...]] = {
    "gemm": ("m", "n", "k"),
    "context_attention": ("batch", "isl"),
    "generation_attention": ("batch", "kv_len"),
    "collective": ("num_gpus", "message_bytes"),
}
_ATTENTION = ("context_attention", "generation_attention")

# AIConfigurator file names (as in the shared data and upstream systems/data/...).
_FILE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("gemm", r"gemm_perf"),
    ("context_attention", r"context_attention_perf"),
    ("generation_attention", r"generation_attention_perf"),
    ("nccl", r"nccl_perf"),
    ("custom_allreduce", r"custom_allreduce_perf"),
)
_REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "gemm": ("m", "n", "k", "gemm_dtype", "latency"),
    "context_attention": ("batch_size", "isl", "num_heads", "num_key_value_heads", "latency"),
    "generation_attention": ("batch_size", "isl", "step", "num_heads", "num_key_value_heads", "latency"),
    "nccl": ("op_name", "nccl_dtype", "num_gpus", "message_size", "latency"),
    "custom_allreduce": ("num_gpus", "message_size", "latency"),
}

_EXPECTED = (
    "AIConfigurator-format parquet files such as *gemm_perf.parquet, *context_attention_perf.parquet, "
    "*generation_attention_perf.parquet, *nccl_perf.parquet, *custom_allreduce_perf.parquet "
    f"(columns like m, n, k, gemm_dtype, latency), or an llmsim {BUNDLE_FILENAME} bundle"
)

_OPS = {
    "allreduce": "all_reduce",
    "allgather": "all_gather",
    "reducescatter": "reduce_scatter",
    "alltoall": "alltoall",
    "alltoallv": "alltoall",
}
_IMPLEMENTATIONS = {"nccl": "nccl", "trtllm": "trtllm", "custom": "trtllm", "customallreduce": "trtllm",
                    "tensorrtllm": "trtllm", "trt": "trtllm"}

# Known device strings -> normalised GPU names that mean the same chip.
_DEVICE_ALIASES: dict[str, frozenset[str]] = {
    "nvidiah10080gbhbm3": frozenset(
        {"h100", "h100sxm", "h100sxm5", "h100sxm80gb", "h100sxm580gb", "h10080gb", "h10080gbhbm3",
         "h100sxm80gbhbm3", "h100sxm580gbhbm3", "nvidiah100", "nvidiah100sxm", "nvidiah10080gbhbm3"}
    ),
    "nvidiah200": frozenset({"h200", "h200sxm", "h200141gb", "h200sxm141gb", "nvidiah200", "nvidiah200sxm"}),
}

# How far beyond the largest head count of one GQA ratio we extrapolate (see _resolve_heads).
_MAX_HEAD_SCALE = 4.0


def _norm(s: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(s).lower())


def _framework_name(s: object) -> str:
    n = _norm(s)
    return {"tensorrtllm": "trtllm", "trt": "trtllm", "trtllm": "trtllm"}.get(n, n)


def _table_dtype(s: object) -> str:
    """Canonical name of a dtype string found in a table ('bfloat16' -> 'bf16', 'fp8_block' kept)."""
    d = str(s).strip().lower()
    if d in ("fp8_block", "fp8block", "block_fp8"):
        return "fp8_block"
    try:
        return canonical(d)
    except LlmsimError:
        return d


def _elem_bytes(dtype: str) -> float:
    d = _table_dtype(dtype)
    if d not in BYTES_PER_ELEMENT:
        raise LlmsimError(f"collective table has unknown element type {dtype!r}",
                          hint="expected half/bfloat16/float/int8/fp8")
    return BYTES_PER_ELEMENT[d]


# ------------------------------------------------------------------------------------------ grids
class _Grid:
    """Dense grids of one table kind: values[key_index, i0, i1, ...] = seconds (NaN = unmeasured).

    Every key (one measured configuration, e.g. (framework, dtype) for GEMM) has its own
    axes: the grid values at which it has any measurement. Lookups bracket the query
    on those, then interpolate log(latency) multilinearly in the logs of the axis
    values. A cell with an unmeasured corner gives None, except in 2-D tables (attention,
    collectives) where a cell with exactly one unmeasured corner is interpolated on the
    triangle of its three measured corners (planar in log space; the same as completing
    the missing corner by the parallelogram rule). For attention the query must also
    satisfy batch x sequence <= the largest measured for that key (the measured region's
    diagonal edge), so that this triangle rule interpolates and never extrapolates.
    """

    def __init__(self, kind: str, keys: list[tuple], axes: list[np.ndarray], values: np.ndarray):
        self.kind = kind
        self.keys = [tuple(k) for k in keys]
        self.axes = [np.asarray(a, dtype=np.float64) for a in axes]
        self.values = np.asarray(values, dtype=np.float64)
        nk, nd = len(self.keys), len(self.axes)
        if self.values.shape != (nk, *(len(a) for a in self.axes)):
            raise LlmsimError(f"corrupt {kind} grid: shape {self.values.shape} does not match its axes")
        self.index = {k: i for i, k in enumerate(self.keys)}
        fin = np.isfinite(self.values)
        self.nonempty: np.ndarray = np.asarray(fin.reshape(nk, -1).any(axis=1)) if nk else np.zeros(0, bool)
        shape = self.values.shape
        self._strides = [int(np.prod(shape[d + 2:], dtype=np.int64)) for d in range(nd)]
        self._kstride = int(np.prod(shape[1:], dtype=np.int64))
        self._triangle = nd == 2
        # per-key axes: (values, log values, global indices) of the grid values it measured
        present = [np.asarray(fin.any(axis=tuple(a for a in range(1, nd + 1) if a != d + 1))) for d in range(nd)] if nk else []
        logs = [np.log(a) for a in self.axes]
        self._kax: list[list[tuple[list, list, list]]] = []
        for ki in range(nk):
            per = []
            for d in range(nd):
                gi = np.nonzero(present[d][ki])[0]
                per.append((self.axes[d][gi].tolist(), logs[d][gi].tolist(), gi.tolist()))
            self._kax.append(per)
        self._cap: list[float] = []
        if kind in _ATTENTION and nk:
            tokens = self.axes[0][:, None] * self.axes[1][None, :]
            self._cap = np.where(fin, tokens[None], 0.0).reshape(nk, -1).max(axis=1).tolist()
        with np.errstate(divide="ignore", invalid="ignore"):
            lv = np.log(self.values)
        self._flat = array("d", np.ascontiguousarray(lv).tobytes())
        # 2-D tables interpolate with monotone cubic Hermite (PCHIP) along each axis
        self._cubic = self._triangle and nk > 0
        self._slopes: list[array] = []
        if self._cubic:
            for d in range(nd):
                sl = _pchip_slopes(lv, logs[d], d + 1)
                self._slopes.append(array("d", np.ascontiguousarray(sl).tobytes()))

    # ---------------------------------------------------------------- building / records
    @classmethod
    def from_records(cls, kind: str, cols: Mapping[str, np.ndarray]) -> _Grid:
        kf, af = _KEY_FIELDS[kind], _AXIS_FIELDS[kind]
        lat = np.asarray(cols["latency_s"], dtype=np.float64)
        ok = np.isfinite(lat) & (lat > 0)
        axis_vals = [np.asarray(cols[f], dtype=np.float64) for f in af]
        for a in axis_vals:
            ok &= np.isfinite(a) & (a > 0)
        lat = lat[ok]
        axis_vals = [a[ok] for a in axis_vals]
        key_cols = [np.asarray(cols[f])[ok].tolist() for f in kf]
        key_tuples = list(zip(*key_cols)) if key_cols else []
        keys = sorted(set(key_tuples))
        index = {k: i for i, k in enumerate(keys)}
        kidx = np.fromiter((index[k] for k in key_tuples), dtype=np.int64, count=len(key_tuples))
        axes = [np.unique(a) for a in axis_vals]
        aidx = [np.searchsorted(ax, a) for ax, a in zip(axes, axis_vals)]
        shape = (len(keys), *(len(a) for a in axes))
        values = np.full(shape, np.nan)
        if len(lat):
            lin = np.ravel_multi_index((kidx, *aidx), shape)
            order = np.argsort(lin, kind="stable")
            lin_s, lat_s = lin[order], lat[order]
            uniq, start, counts = np.unique(lin_s, return_index=True, return_counts=True)
            agg = lat_s[start].copy()
            for j in np.nonzero(counts > 1)[0]:  # repeated measurements: median
                agg[j] = float(np.median(lat_s[start[j]:start[j] + counts[j]]))
            values.flat[uniq] = agg
        return cls(kind, keys, axes, values)

    def records(self) -> dict[str, np.ndarray]:
        """Every measured point as columns (key fields, axis fields, latency_s)."""
        idx = np.nonzero(np.isfinite(self.values))
        out: dict[str, np.ndarray] = {}
        for j, f in enumerate(_KEY_FIELDS[self.kind]):
            col = np.array([k[j] for k in self.keys]) if self.keys else np.zeros(0)
            out[f] = col[idx[0]] if len(col) else col
        for d, f in enumerate(_AXIS_FIELDS[self.kind]):
            a = self.axes[d]
            a = a.astype(np.int64) if np.all(a == np.round(a)) else a
            out[f] = a[idx[d + 1]]
        out["latency_s"] = self.values[idx]
        return out

    def drop(self, mask: np.ndarray) -> _Grid:
        idx = np.nonzero(np.isfinite(self.values))
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != idx[0].shape:
            raise LlmsimError(f"mask for the {self.kind} table has {mask.shape[0] if mask.ndim else 0} entries, "
                              f"expected {idx[0].shape[0]}", hint="build it from records(table)")
        values = self.values.copy()
        values[tuple(i[mask] for i in idx)] = np.nan
        return _Grid(self.kind, self.keys, self.axes, values)

    # ---------------------------------------------------------------- lookup
    def interp(self, ki: int, xs: tuple[float, ...]) -> float | None:
        """Interpolate log latency of key `ki` at axis values `xs`; seconds, or None outside."""
        kax = self._kax[ki]
        st = self._strides
        br = []  # per axis: (offset of lower node, offset of upper node or -1 on a node, fraction, log step)
        for d, x in enumerate(xs):
            vals, logs, gidx = kax[d]
            if not vals or not (vals[0] <= x <= vals[-1]):  # also rejects NaN
                return None
            i = bisect_left(vals, x)
            if vals[i] == x:
                br.append((gidx[i] * st[d], -1, 0.0, 0.0))
            else:
                h = logs[i] - logs[i - 1]
                br.append((gidx[i - 1] * st[d], gidx[i] * st[d], (math.log(x) - logs[i - 1]) / h, h))
        base = ki * self._kstride
        if self._cubic:
            return self._hermite2(base, br)
        return self._linear(base, br)

    def _linear(self, base: int, br: list) -> float | None:
        offs = [base]
        ws = [1.0]
        for lo, hi, f, _ in br:
            if hi < 0:
                offs = [o + lo for o in offs]
            else:
                g = 1.0 - f
                offs = [o + lo for o in offs] + [o + hi for o in offs]
                ws = [w * g for w in ws] + [w * f for w in ws]
        flat = self._flat
        acc = 0.0
        missing = -1
        for j, o in enumerate(offs):
            v = flat[o]
            if v != v:  # NaN: unmeasured corner
                if missing >= 0 or len(offs) != 4 or not self._triangle:
                    return None
                missing = j
            else:
                acc += ws[j] * v
        if missing >= 0:
            # one missing corner of a 2-D cell: planar interpolation on the other three
            # (= completing it by the parallelogram rule v[j] = v[adj1] + v[adj2] - v[opp])
            adj = [flat[offs[j]] for j in range(4) if j != missing and j != 3 - missing]
            acc += ws[missing] * (adj[0] + adj[1] - flat[offs[3 - missing]])
        return math.exp(acc)

    def _hermite2(self, base: int, br: list) -> float | None:
        """2-D cubic Hermite with PCHIP node slopes and zero twist: exactly 1-D PCHIP on grid lines."""
        terms: list[tuple[tuple[int, float, float], ...]] = []
        for lo, hi, f, h in br:
            if hi < 0:
                terms.append(((lo, 1.0, 0.0),))
            else:
                f2 = f * f
                f3 = f2 * f
                terms.append(((lo, 2 * f3 - 3 * f2 + 1, (f3 - 2 * f2 + f) * h), (hi, 3 * f2 - 2 * f3, (f3 - f2) * h)))
        flat = self._flat
        s0, s1 = self._slopes
        acc = 0.0
        for o0, v0, d0 in terms[0]:
            for o1, v1, d1 in terms[1]:
                o = base + o0 + o1
                v = flat[o]
                if v != v:
                    return self._linear(base, br)  # ragged hull edge: triangle rule or None
                acc += v0 * v1 * v + d0 * v1 * s0[o] + v0 * d1 * s1[o]
        return math.exp(acc)

    def interp_attention(self, ki: int, batch: float, seq: float) -> float | None:
        if batch * seq > self._cap[ki] * (1.0 + 1e-12):
            return None
        return self.interp(ki, (batch, seq))

    # ---------------------------------------------------------------- description
    def key_values(self, field: str) -> list:
        j = _KEY_FIELDS[self.kind].index(field)
        return sorted({k[j] for k, ne in zip(self.keys, self.nonempty) if ne})


def _pchip_slopes(lv: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """d(log latency)/d(log axis) at every measured node, Fritsch-Carlson (PCHIP) rule.

    Neighbours are the nearest *measured* nodes along the axis (unmeasured ones are
    skipped, as the per-key axes skip them); ends use the shape-preserving 3-point rule.
    """
    y = np.moveaxis(lv, axis, -1)
    L = y.shape[-1]
    valid = np.isfinite(y)
    ar = np.arange(L)
    pad_lo = np.full(y.shape[:-1] + (1,), -1)
    pad_hi = np.full(y.shape[:-1] + (1,), L)
    prev_incl = np.maximum.accumulate(np.where(valid, ar, -1), axis=-1)
    prev = np.concatenate([pad_lo, prev_incl[..., :-1]], axis=-1)
    next_incl = np.minimum.accumulate(np.where(valid, ar, L)[..., ::-1], axis=-1)[..., ::-1]
    nxt = np.concatenate([next_incl[..., 1:], pad_hi], axis=-1)
    hasp, hasn = prev >= 0, nxt < L
    pi, ni = np.clip(prev, 0, L - 1), np.clip(nxt, 0, L - 1)
    pi2 = np.clip(np.take_along_axis(prev, pi, -1), 0, L - 1)  # second neighbour to the left
    ni2 = np.clip(np.take_along_axis(nxt, ni, -1), 0, L - 1)
    hasp2 = hasp & (np.take_along_axis(prev, pi, -1) >= 0)
    hasn2 = hasn & (np.take_along_axis(nxt, ni, -1) < L)
    with np.errstate(divide="ignore", invalid="ignore"):
        xj = x[ar]
        hl, hr = xj - x[pi], x[ni] - xj
        ml = (y - np.take_along_axis(y, pi, -1)) / hl
        mr = (np.take_along_axis(y, ni, -1) - y) / hr
        w1, w2 = 2 * hr + hl, hr + 2 * hl
        interior = np.where(ml * mr > 0, (w1 + w2) / (w1 / ml + w2 / mr), 0.0)
        # ends: d = ((2 h0 + h1) m0 - h0 m1) / (h0 + h1), kept shape-preserving
        h1r = x[ni2] - x[ni]
        m1r = (np.take_along_axis(y, ni2, -1) - np.take_along_axis(y, ni, -1)) / h1r
        left_end = _end_slope(hr, h1r, mr, m1r, hasn2)
        h1l = x[pi] - x[pi2]
        m1l = (np.take_along_axis(y, pi, -1) - np.take_along_axis(y, pi2, -1)) / h1l
        right_end = _end_slope(hl, h1l, ml, m1l, hasp2)
    d = np.where(hasp & hasn, interior, np.where(hasn, left_end, np.where(hasp, right_end, 0.0)))
    d = np.where(valid & np.isfinite(d), d, np.where(valid, 0.0, np.nan))
    return np.moveaxis(d, -1, axis)


def _end_slope(h0, h1, m0, m1, has_second):
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    d = np.where(np.sign(d) != np.sign(m0), 0.0, d)
    d = np.where((np.sign(m0) != np.sign(m1)) & (np.abs(d) > 3 * np.abs(m0)), 3 * m0, d)
    return np.where(has_second, d, m0)


class _Family:
    """All head-count pairs measured for one (framework, dtypes, head_dim, window)."""

    __slots__ = ("pairs", "by_ratio", "by_kvh")

    def __init__(self) -> None:
        self.pairs: dict[tuple[int, int], int] = {}
        self.by_ratio: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.by_kvh: dict[int, list[tuple[int, int]]] = {}

    def add(self, h: int, kvh: int, idx: int) -> None:
        self.pairs[(h, kvh)] = idx
        g = math.gcd(h, kvh)
        self.by_ratio.setdefault((h // g, kvh // g), []).append((h, idx))
        self.by_kvh.setdefault(kvh, []).append((h, idx))

    def finish(self) -> None:
        for lst in (*self.by_ratio.values(), *self.by_kvh.values()):
            lst.sort()


def _between(lst: list[tuple[int, int]] | None, h: int):
    if not lst:
        return None
    for (h0, i0), (h1, i1) in zip(lst, lst[1:]):
        if h0 < h < h1:
            return ("i", i0, i1, math.log(h / h0) / math.log(h1 / h0))
    return None


# ------------------------------------------------------------------------------------------ tables
class KernelTables:
    """Measured kernel latencies of one GPU, interpolated. All results are in seconds.

    Use `KernelTables.load()` for the bundled H100 SXM tables, or
    `KernelTables.load(directory)` for a directory of AIConfigurator parquet files
    (or a saved bundle). Every lookup returns ``None`` when the shape lies outside
    what was measured, so the caller can fall back to the roofline model.
    """

    def __init__(self, grids: Mapping[str, _Grid | None], device: str, sources: list[dict] | None = None):
        self._grids: dict[str, _Grid | None] = {k: grids.get(k) for k in TABLE_KINDS}
        if all(g is None or not g.keys for g in self._grids.values()):
            raise LlmsimError("no kernel tables loaded")
        self.device = device
        self.sources = list(sources or [])
        self._families: dict[str, dict[tuple, _Family]] = {}
        for kind in _ATTENTION:
            fams: dict[tuple, _Family] = {}
            g = self._grids[kind]
            if g is not None:
                for i, key in enumerate(g.keys):
                    if g.nonempty[i]:
                        fams.setdefault(key[:-2], _Family()).add(int(key[-2]), int(key[-1]), i)
            for f in fams.values():
                f.finish()
            self._families[kind] = fams
        self._head_plans: dict[tuple, tuple | None] = {}
        self._coll_keys: dict[tuple, int] = {}
        self._default_fw = {kind: self._pick_default_framework(kind) for kind in TABLE_KINDS}
        g = self._grids.get("gemm")
        self._gemm_frameworks = frozenset(g.key_values("framework")) if g is not None and g.keys else frozenset()

    def _pick_default_framework(self, kind: str) -> str | None:
        g = self._grids[kind]
        if g is None or not g.keys or kind == "collective":
            return None
        fws = g.key_values("framework")
        if not fws:
            return None
        return "trtllm" if "trtllm" in fws else fws[0]

    # ================================================================ loading
    @classmethod
    def load(cls, path: str | Path | None = None) -> KernelTables:
        """Load kernel tables.

        ``None``: the bundled H100 SXM tables (cached; shared by every caller, treat as
        read-only). A directory: every AIConfigurator-format ``*.parquet`` in it (searched
        recursively; tables are recognised by their columns / ``op_name`` and file names
        such as ``*gemm_perf.parquet``), or a saved bundle (``kernel_tables.npz``).
        A path to a bundle ``.npz`` file also works; a ``kernel_tables.npz`` inside a
        directory takes precedence over parquet files next to it. Repeated measurements
        of one point (also across files) are reduced to their median.
        """
        if path is None:
            return _bundled()
        p = Path(path).expanduser()
        if p.is_file() and p.suffix == ".npz":
            return cls._load_bundle(p)
        if p.is_file():
            raise LlmsimError(f"{str(p)!r} is a file; --kernels takes a directory of kernel tables (or a {BUNDLE_FILENAME} bundle)",
                              hint=f"pass the directory holding it: {_EXPECTED}")
        if not p.is_dir():
            raise LlmsimError(
                f"kernel table directory {str(p)!r} does not exist",
                hint=f"pass a directory holding {_EXPECTED}",
            )
        if (p / BUNDLE_FILENAME).is_file():
            return cls._load_bundle(p / BUNDLE_FILENAME)
        return cls._load_directory(p)

    @classmethod
    def _load_directory(cls, root: Path) -> KernelTables:
        import pyarrow.parquet as pq

        files = sorted(root.rglob("*.parquet"))
        parts: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in TABLE_KINDS}
        devices: dict[str, int] = {}
        sources: list[dict] = []
        for f in files:
            try:
                schema = pq.read_schema(f)
            except Exception as e:  # not a readable parquet file
                raise LlmsimError(f"cannot read {f}: {e}", hint="remove or fix the file") from e
            kind = _classify(f.name, schema.names)
            if kind is None:
                continue
            table = pq.read_table(f)
            cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
            if kind in ("context_attention", "generation_attention") and "op_name" in cols:
                ops = set(np.unique(cols["op_name"].astype(str)).tolist())
                if ops and not ops & {"context_attention", "generation_attention"}:
                    continue
            kind2, recs = _to_records(kind, cols)
            n = len(recs["latency_s"])
            if n == 0:
                continue
            parts[kind2].append(recs)
            if "device" in cols:
                for d in np.unique(cols["device"].astype(str)).tolist():
                    devices[d] = devices.get(d, 0) + n
            fw = np.unique(cols["framework"].astype(str)).tolist() if "framework" in cols else []
            ver = np.unique(cols["version"].astype(str)).tolist() if "version" in cols else []
            sources.append({"file": f.name, "table": kind, "framework": ",".join(fw), "version": ",".join(ver),
                            "rows": int(n)})
        if not sources:
            raise LlmsimError(
                f"no AIConfigurator-format kernel tables found in {str(root)!r}",
                hint=f"expected {_EXPECTED}",
            )
        if len(devices) > 1:
            raise LlmsimError(f"kernel tables in {str(root)!r} come from different GPUs: {sorted(devices)}",
                              hint="keep one GPU's tables per directory")
        device = next(iter(devices)) if devices else root.name
        grids = {}
        for kind in TABLE_KINDS:
            if parts[kind]:
                cols = {f: np.concatenate([p[f] for p in parts[kind]]) for f in parts[kind][0]}
                grids[kind] = _Grid.from_records(kind, cols)
        return cls(grids, device, sources)

    # ---------------------------------------------------------------- bundle
    def save(self, directory: str | Path) -> Path:
        """Write these tables as a compact bundle (``kernel_tables.npz``: float32 ms grids)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "device": self.device,
            "attribution": ATTRIBUTION,
            "sources": self.sources,
            "tables": {},
        }
        arrays: dict[str, np.ndarray] = {}
        for kind, g in self._grids.items():
            if g is None:
                continue
            keep = np.nonzero(g.nonempty)[0]
            meta["tables"][kind] = {"key_fields": list(_KEY_FIELDS[kind]), "axis_fields": list(_AXIS_FIELDS[kind]),
                                    "keys": [list(g.keys[i]) for i in keep]}
            for a, arr in enumerate(g.axes):
                arrays[f"{kind}__axis{a}"] = arr
            arrays[f"{kind}__ms"] = (g.values[keep] * 1e3).astype(np.float32)
        arrays["meta"] = np.array(json.dumps(meta, default=_json_default, sort_keys=True))
        out = d / BUNDLE_FILENAME
        _write_npz(out, arrays)
        return out

    @classmethod
    def _load_bundle(cls, file: Path) -> KernelTables:
        try:
            with np.load(file, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as e:
            raise LlmsimError(f"cannot read kernel bundle {file}: {e}",
                              hint="regenerate it with benchmarks/build_kernel_bundle.py") from e
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != BUNDLE_FORMAT or int(meta.get("version", 0)) > BUNDLE_VERSION:
            raise LlmsimError(f"{file} is not an llmsim kernel bundle of a supported version",
                              hint="regenerate it with benchmarks/build_kernel_bundle.py")
        grids = {}
        for kind, t in meta["tables"].items():
            axes = [data[f"{kind}__axis{a}"] for a in range(len(_AXIS_FIELDS[kind]))]
            keys = [tuple(k) for k in t["keys"]]
            grids[kind] = _Grid(kind, keys, axes, data[f"{kind}__ms"].astype(np.float64) * 1e-3)
        return cls(grids, meta.get("device", ""), meta.get("sources", []))

    # ================================================================ held-out support
    def records(self, table: str) -> dict[str, np.ndarray]:
        """The measured (deduplicated) points of one table as numpy columns.

        Columns: the key fields (e.g. framework, dtype), the axis fields (e.g. m, n, k)
        and ``latency_s``; see ``_KEY_FIELDS``/``_AXIS_FIELDS`` for each table.
        """
        g = self._grid_or_error(table)
        return g.records()

    def without(self, table: str, predicate: Callable[[dict[str, np.ndarray]], np.ndarray] | np.ndarray) -> KernelTables:
        """A copy with the measured points of `table` for which `predicate` is true removed.

        `predicate` receives ``records(table)`` and returns a boolean mask (or pass the mask
        directly). The other tables are shared. This is what the held-out validation uses:
        the lookups of the copy run the same interpolation code on less data.
        """
        g = self._grid_or_error(table)
        mask = predicate(g.records()) if callable(predicate) else predicate
        grids = dict(self._grids)
        grids[table] = g.drop(np.asarray(mask, dtype=bool))
        return KernelTables(grids, self.device, self.sources)

    def _grid_or_error(self, table: str) -> _Grid:
        if table not in TABLE_KINDS:
            raise LlmsimError(f"unknown kernel table {table!r}", hint=f"use one of {', '.join(TABLE_KINDS)}")
        g = self._grids[table]
        if g is None:
            raise LlmsimError(f"no {table} table loaded")
        return g

    # ================================================================ identity
    def matches_gpu(self, gpu_name) -> bool:
        """Whether these tables were measured on `gpu_name` ('h100-sxm' <-> 'NVIDIA H100 80GB HBM3').

        Accepts a string, or an object with ``name``/``display_name``/``aliases`` (a GPUSpec).
        """
        return device_matches(self.device, gpu_name)

    def __repr__(self) -> str:
        have = [k for k, g in self._grids.items() if g is not None and g.nonempty.any()]
        return f"KernelTables(device={self.device!r}, tables={have})"

    # ================================================================ GEMM
    def gemm_s(self, m: float, n: float, k: float, dtype: str = "bf16", framework: str | None = None) -> float | None:
        """Latency (s) of an (m x k) @ (k x n) GEMM, interpolated in (log m, log n, log k).

        `dtype`: 'bf16' (also 'fp16', which runs at the same rate and uses the bf16 table
        unless an fp16 one is loaded), 'fp8' (per-tensor scaled fp8) or 'fp8_block'
        (DeepSeek-style block-scaled fp8). `framework`: 'trtllm' or 'vllm' (default:
        trtllm if loaded); a framework the tables do not have falls back to the default
        one (a `llmsim profile` table, framework 'torch', serves every engine). Returns None for a dtype/framework without a table, or when
        m, n or k lies outside the measured grid (m 1..32768, n and k 32..65536 on the
        bundled H100 tables) or the interpolation cell touches an unmeasured shape.
        """
        g = self._grids["gemm"]
        if g is None:
            return None
        fw = self._default_fw["gemm"] if framework is None else _framework_name(framework)
        if framework is not None and fw not in self._gemm_frameworks:
            fw = self._default_fw["gemm"]  # e.g. a `llmsim profile` ('torch') table serves any engine
        d = _query_dtype(dtype)
        ki = g.index.get((fw, d))
        if ki is None and d == "fp16":
            ki = g.index.get((fw, "bf16"))
        if ki is None:
            return None
        return g.interp(ki, (float(m), float(n), float(k)))

    # ================================================================ attention
    def context_attention_s(self, batch: float, isl: float, num_heads: int, num_kv_heads: int, head_dim: int,
                            dtype: str = "bf16", kv_dtype: str = "bf16", window: int = 0,
                            framework: str | None = None) -> float | None:
        """Latency (s) of one prefill attention call: `batch` sequences of `isl` new tokens each.

        Head counts are per GPU. (batch, isl) are interpolated in log space within the
        measured hull (batch 1..256, isl 1..16384 and batch*isl up to the largest measured
        token count of that configuration); cells on the hull's ragged edge use a
        batch-linear estimate for the unmeasured corner.

        Head counts not in the table are scaled, not refused: (1) between two measured head
        counts of the same GQA ratio (num_heads/num_kv_heads), interpolate log latency in log
        heads; (2) otherwise between two measured num_heads with the same num_kv_heads,
        likewise; (3) above the largest measured head count of that GQA ratio (at most 4x
        it), extend the log-log slope between its two largest head counts at this (batch,
        seq), clamped to [0, 1]: linear in heads once the kernel is saturated (attention time
        is close to linear in num_heads at fixed ratio), flat while it is latency-bound.
        Anything else (below the smallest, a ratio never measured and no same-KV-heads
        bracket, or > 4x) returns None.

        `window` > 0 is a sliding window: the table's own window entries are used when
        measured; a window >= isl is plain causal attention; anything else returns None.
        Dtypes: `dtype` is the attention math format ('bf16'/'fp8'), `kv_dtype` the KV-cache
        format; combinations not measured return None.
        """
        g = self._grids["context_attention"]
        if g is None:
            return None
        fw = self._default_fw["context_attention"] if framework is None else _framework_name(framework)
        a, kv = _query_dtype(dtype), _query_dtype(kv_dtype)
        fams = self._families["context_attention"]
        isl_f = float(isl)
        fam = _pick_family(fams, (fw, a, kv), int(head_dim), int(window), isl_f, fallback_dtypes=_fp16_alts(a, kv))
        if fam is None:
            return None
        return self._eval_heads("context_attention", g, fam, int(num_heads), int(num_kv_heads), float(batch), isl_f)

    def generation_attention_s(self, batch: float, kv_len: float, num_heads: int, num_kv_heads: int, head_dim: int,
                               kv_dtype: str = "bf16", window: int = 0, framework: str | None = None) -> float | None:
        """Latency (s) of one decode attention call: `batch` sequences, one new token each,
        attending to `kv_len` cached tokens (the table's ``isl + step``).

        Interpolated in (log batch, log kv_len) within the measured hull (batch 1..2048,
        kv_len 2..131072, batch*kv_len up to the largest measured for that configuration).
        Head counts not in the table are handled as in `context_attention_s`
        (interpolate at the same GQA ratio or the same KV-head count; up to 4x above the
        largest measured head count of that ratio, extend its log-log slope clamped to
        [0, 1], i.e. at most linear in heads; else None).
        `window` > 0: measured window entries if present, else plain decode over
        ``min(kv_len, window)`` tokens.
        """
        g = self._grids["generation_attention"]
        if g is None:
            return None
        fw = self._default_fw["generation_attention"] if framework is None else _framework_name(framework)
        kv = _query_dtype(kv_dtype)
        fams = self._families["generation_attention"]
        s = float(kv_len)
        hd, w = int(head_dim), int(window)
        fam = _pick_family(fams, (fw, kv), hd, w, s, fallback_dtypes=_fp16_alts(kv))
        if fam is None and 0 < w < s:
            fam = _pick_family(fams, (fw, kv), hd, 0, s, fallback_dtypes=_fp16_alts(kv))
            s = float(w)
        if fam is None:
            return None
        return self._eval_heads("generation_attention", g, fam, int(num_heads), int(num_kv_heads), float(batch), s)

    def _eval_heads(self, kind: str, g: _Grid, fam: tuple, h: int, kvh: int, batch: float, seq: float) -> float | None:
        plan = self._resolve_heads(kind, fam, h, kvh)
        if plan is None:
            return None
        t = plan[0]
        if t == "x":
            return g.interp_attention(plan[1], batch, seq)
        if t == "i":
            lo = g.interp_attention(plan[1], batch, seq)
            hi = g.interp_attention(plan[2], batch, seq) if lo is not None else None
            if lo is None or hi is None:
                return None
            f = plan[3]
            return math.exp((1.0 - f) * math.log(lo) + f * math.log(hi))
        if t == "e":  # above the largest head count: extend its local log-log slope, clamped to [0, 1]
            top = g.interp_attention(plan[1], batch, seq)
            prev = g.interp_attention(plan[2], batch, seq) if top is not None else None
            if top is None or prev is None:
                return None
            alpha = min(1.0, max(0.0, math.log(top / prev) / plan[4]))
            return top * math.exp(alpha * plan[3])
        v = g.interp_attention(plan[1], batch, seq)
        return None if v is None else v * plan[2]

    def _resolve_heads(self, kind: str, fam: tuple, h: int, kvh: int) -> tuple | None:
        ck = (kind, fam, h, kvh)
        try:
            return self._head_plans[ck]
        except KeyError:
            pass
        plan: tuple | None = None
        F = self._families[kind].get(fam)
        if F is not None and h > 0 and kvh > 0:
            idx = F.pairs.get((h, kvh))
            if idx is not None:
                plan = ("x", idx)
            else:
                gg = math.gcd(h, kvh)
                same_ratio = F.by_ratio.get((h // gg, kvh // gg))
                plan = _between(same_ratio, h) or _between(F.by_kvh.get(kvh), h)
                if plan is None and same_ratio:
                    h_max, i_max = same_ratio[-1]
                    if h_max < h <= _MAX_HEAD_SCALE * h_max:
                        if len(same_ratio) >= 2:
                            h_prev, i_prev = same_ratio[-2]
                            plan = ("e", i_max, i_prev, math.log(h / h_max), math.log(h_max / h_prev))
                        else:
                            plan = ("s", i_max, h / h_max)
        self._head_plans[ck] = plan
        return plan

    # ================================================================ collectives
    def collective_s(self, op: str, num_gpus: int, message_bytes: float, implementation: str = "nccl",
                     dtype: str = "bf16") -> float | None:
        """Latency (s) of one collective over `num_gpus` GPUs moving `message_bytes` per GPU.

        `op`: all_reduce, all_gather, reduce_scatter, alltoall. `message_bytes` is the size
        of the (full, per-rank) buffer the tables' ``message_size`` counts, converted from
        elements to bytes at load time. `implementation`: 'nccl', or 'trtllm' (TRT-LLM
        custom all-reduce; all_reduce only). `dtype` picks the table measured with that
        element type (16-bit 'half' or 8-bit 'int8' for NCCL), falling back to another
        element type at equal bytes. Interpolated log-log in bytes and in num_gpus (2, 4, 8
        measured; 6 is interpolated). One GPU costs 0; sizes or GPU counts outside the
        measured range return None.
        """
        g = self._grids["collective"]
        o = _OPS.get(_norm(op))
        if o is None:
            raise LlmsimError(f"unknown collective {op!r}",
                              hint="use all_reduce, all_gather, reduce_scatter or alltoall")
        impl = _IMPLEMENTATIONS.get(_norm(implementation), _norm(implementation))
        if int(num_gpus) == 1:
            return 0.0
        if g is None:
            return None
        ck = (impl, o, dtype)
        ki = self._coll_keys.get(ck, -2)
        if ki == -2:
            want = _query_dtype(dtype)
            cands = [k for k in g.keys if k[0] == impl and k[1] == o and g.nonempty[g.index[k]]]
            wb = BYTES_PER_ELEMENT.get(want)
            cands.sort(key=lambda k: (k[2] != want, BYTES_PER_ELEMENT.get(k[2]) != wb, k[2]))
            ki = g.index[cands[0]] if cands else -1
            self._coll_keys[ck] = ki
        if ki < 0:
            return None
        return g.interp(ki, (float(num_gpus), float(message_bytes)))

    # ================================================================ coverage
    def coverage(self) -> dict:
        """What each table covers: keys, axis ranges and point counts (for --explain and docs)."""
        out: dict = {"device": self.device, "attribution": ATTRIBUTION, "sources": self.sources}
        g = self._grids["gemm"]
        if g is not None:
            gem: dict = {}
            for i, (fw, dt) in enumerate(g.keys):
                if not g.nonempty[i]:
                    continue
                v = g.values[i]
                fin = np.isfinite(v)
                rng = {}
                for d, name in enumerate(_AXIS_FIELDS["gemm"]):
                    other = tuple(a for a in range(3) if a != d)
                    present = g.axes[d][fin.any(axis=other)]
                    rng[name] = [int(present.min()), int(present.max())]
                    rng[f"{name}_values"] = [int(x) for x in present]
                gem.setdefault(fw, {})[dt] = {**rng, "points": int(fin.sum())}
            out["gemm"] = gem
        for kind in _ATTENTION:
            g = self._grids[kind]
            if g is None:
                continue
            seq = _AXIS_FIELDS[kind][1]
            per: dict = {}
            for fam, F in self._families[kind].items():
                fw = fam[0]
                dts = "/".join(fam[1:-2])
                hd, w = fam[-2], fam[-1]
                idxs = list(F.pairs.values())
                v = g.values[idxs]
                fin = np.isfinite(v)
                b = g.axes[0][fin.any(axis=(0, 2))]
                s = g.axes[1][fin.any(axis=(0, 1))]
                caps = [g._cap[i] for i in idxs]
                per.setdefault(fw, []).append({
                    "dtypes": dts, "head_dim": int(hd), "window": int(w),
                    "heads": [f"{h}/{kv}" for h, kv in sorted(F.pairs)],
                    "batch": [int(b.min()), int(b.max())], seq: [int(s.min()), int(s.max())],
                    "max_tokens": [int(min(caps)), int(max(caps))], "points": int(fin.sum()),
                })
            out[kind] = per
        g = self._grids["collective"]
        if g is not None:
            col: dict = {}
            for i, (impl, op, dt) in enumerate(g.keys):
                if not g.nonempty[i]:
                    continue
                fin = np.isfinite(g.values[i])
                ng = g.axes[0][fin.any(axis=1)]
                mb = g.axes[1][fin.any(axis=0)]
                col.setdefault(impl, {}).setdefault(op, {})[dt] = {
                    "num_gpus": [int(x) for x in ng], "message_bytes": [int(mb.min()), int(mb.max())],
                    "points": int(fin.sum())}
            out["collective"] = col
        return out


# ------------------------------------------------------------------------------------------ helpers
def _query_dtype(dtype: str) -> str:
    d = str(dtype).strip().lower()
    if d in ("fp8_block", "fp8block", "block_fp8", "fp8-block"):
        return "fp8_block"
    return canonical(d)  # LlmsimError for an unknown dtype


def _fp16_alts(*dts: str) -> list[tuple[str, ...]]:
    """fp16 runs like bf16: if an fp16 combination is not measured, try bf16 in its place."""
    if "fp16" not in dts:
        return []
    return [tuple("bf16" if d == "fp16" else d for d in dts)]


def _pick_family(fams: dict[tuple, _Family], head: tuple, hd: int, w: int, seq: float,
                 fallback_dtypes: list[tuple[str, ...]]) -> tuple | None:
    fw = head[0]
    for dts in [head[1:], *fallback_dtypes]:
        base = (fw, *dts, hd)
        if w > 0 and (*base, w) in fams:
            return (*base, w)
        if (w <= 0 or w >= seq) and (*base, 0) in fams:
            return (*base, 0)
    return None


def _classify(filename: str, columns: list[str]) -> str | None:
    """Which kind of AIConfigurator table a file holds (None: not one we use)."""
    cols = set(columns)
    by_name = None
    for kind, pat in _FILE_PATTERNS:
        if re.search(pat, filename):
            by_name = kind
            break
    if by_name is not None:
        missing = [c for c in _REQUIRED_COLUMNS[by_name] if c not in cols]
        if missing:
            raise LlmsimError(f"{filename} looks like a {by_name} table but lacks column(s) {', '.join(missing)}",
                              hint=f"an AIConfigurator {by_name} table has columns {', '.join(_REQUIRED_COLUMNS[by_name])}")
        return by_name
    for kind in ("gemm", "nccl", "custom_allreduce"):
        if all(c in cols for c in _REQUIRED_COLUMNS[kind]) and (kind != "custom_allreduce" or "allreduce_dtype" in cols):
            return kind
    if all(c in cols for c in _REQUIRED_COLUMNS["context_attention"]):
        return "attention"  # decided by op_name / step in _to_records
    return None


def _map_str(values, fn) -> np.ndarray:
    """Apply `fn` to each distinct string of a column (fast for long, repetitive columns)."""
    u, inv = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return np.array([fn(x) for x in u.tolist()] or [""], dtype=object)[inv.reshape(-1)].astype(str)


def _col(cols: Mapping[str, np.ndarray], name: str, default, n: int) -> np.ndarray:
    if name in cols:
        return np.asarray(cols[name])
    return np.full(n, default)


def _to_records(kind: str, cols: Mapping[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
    """Raw AIConfigurator columns -> our record columns (SI units, canonical names)."""
    n = len(cols["latency"])
    lat = np.asarray(cols["latency"], dtype=np.float64) * 1e-3  # ms -> s
    fw = _map_str(_col(cols, "framework", "unknown", n), _framework_name)
    if kind == "gemm":
        if "op_name" in cols:
            keep = np.asarray(cols["op_name"]).astype(str) == "gemm"
        else:
            keep = np.ones(n, bool)
        gemm_dts = _map_str(cols["gemm_dtype"], _table_dtype)
        r = {"framework": fw, "dtype": gemm_dts, "m": cols["m"], "n": cols["n"], "k": cols["k"], "latency_s": lat}
        return "gemm", {k: np.asarray(v)[keep] for k, v in r.items()}
    if kind in ("context_attention", "generation_attention", "attention"):
        if kind == "attention":
            op_names = np.asarray(_col(cols, "op_name", "", n)).astype(str)
            step = np.asarray(_col(cols, "step", 0, n))
            is_gen = (op_names == "generation_attention") | ((op_names != "context_attention") & (step > 0))
            kind = "generation_attention" if is_gen.mean() > 0.5 else "context_attention"
        keep = np.ones(n, bool)
        if "beam_width" in cols:
            keep &= np.asarray(cols["beam_width"]) == 1
        attn = _map_str(_col(cols, "attn_dtype", "bfloat16", n), _table_dtype)
        kvd = _map_str(_col(cols, "kv_cache_dtype", "bfloat16", n), _table_dtype)
        common = {
            "framework": fw, "kv_dtype": kvd,
            "head_dim": _col(cols, "head_dim", 128, n).astype(np.int64),
            "window": _col(cols, "window_size", 0, n).astype(np.int64),
            "num_heads": np.asarray(cols["num_heads"]).astype(np.int64),
            "num_kv_heads": np.asarray(cols["num_key_value_heads"]).astype(np.int64),
            "batch": np.asarray(cols["batch_size"]).astype(np.int64),
            "latency_s": lat,
        }
        if kind == "context_attention":
            r = {**common, "attn_dtype": attn, "isl": np.asarray(cols["isl"]).astype(np.int64)}
        else:
            kv_len = np.asarray(cols["isl"]).astype(np.int64) + _col(cols, "step", 0, n).astype(np.int64)
            r = {**common, "kv_len": kv_len}
        return kind, {k: np.asarray(v)[keep] for k, v in r.items()}
    # collectives
    if kind == "nccl":
        ops = [_OPS.get(_norm(x), _norm(x)) for x in np.asarray(cols["op_name"]).tolist()]
        dt_raw = np.asarray(cols["nccl_dtype"]).tolist()
        impl = np.full(n, "nccl")
    else:
        ops = [_OPS.get(_norm(x), _norm(x)) for x in _col(cols, "op_name", "all_reduce", n).tolist()]
        dt_raw = _col(cols, "allreduce_dtype", "bfloat16", n).tolist()
        impl_raw = _col(cols, "implementation", "trtllm", n).tolist()
        impl = np.array([_IMPLEMENTATIONS.get(_norm(x), _norm(x)) for x in impl_raw])
    dts = [_table_dtype(x) for x in dt_raw]
    nbytes = np.asarray(cols["message_size"], dtype=np.float64) * np.array([_elem_bytes(x) for x in dts])
    r = {"implementation": impl, "op": np.array(ops), "dtype": np.array(dts),
         "num_gpus": np.asarray(cols["num_gpus"]).astype(np.int64), "message_bytes": nbytes, "latency_s": lat}
    return "collective", r


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """np.savez_compressed, but byte-reproducible (fixed zip timestamps, sorted members)."""
    import io
    import zipfile

    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


@functools.lru_cache(maxsize=1)
def _bundled() -> KernelTables:
    res = importlib.resources.files("llmsim") / "kernels_data" / "h100" / BUNDLE_FILENAME
    if not res.is_file():
        raise LlmsimError("the bundled H100 kernel tables are missing from this installation",
                          hint="reinstall llmsim, or run benchmarks/build_kernel_bundle.py")
    with importlib.resources.as_file(res) as p:
        return KernelTables._load_bundle(Path(p))


# The device the bundled tables were measured on (checked by build_kernel_bundle.py / tests), so
# callers can tell whether the bundle applies to a GPU without loading it.
BUNDLED_DEVICE = "NVIDIA H100 80GB HBM3"


PROFILES_DIR = "profiles"


def bundled_profiles() -> dict[str, Path]:
    """The `llmsim profile` runs shipped with the package, by directory name (a catalog GPU
    id, e.g. 'h100-sxm'); each directory holds the tables and metadata.json (device,
    driver, library versions, date, timing settings). Provenance: kernels_data/profiles/README.md."""
    root = importlib.resources.files("llmsim") / "kernels_data" / PROFILES_DIR
    if not root.is_dir():
        return {}
    return {d.name: Path(str(d)) for d in sorted(root.iterdir(), key=lambda d: d.name)
            if d.is_dir() and (d / "metadata.json").is_file()}


def bundled_profile_path(gpu_name) -> Path | None:
    """Directory of the bundled `llmsim profile` run measured on `gpu_name` (a string or a
    GPUSpec), or None when no bundled profile was measured on that GPU."""
    for device, path in _profile_devices():
        if device_matches(device, gpu_name):
            return path
    return None


def bundled_profile(gpu_name) -> KernelTables | None:
    """Tables of the bundled profile measured on `gpu_name` (`bundled_profile_path`), or None."""
    path = bundled_profile_path(gpu_name)
    return None if path is None else load_cached(path)


@functools.lru_cache(maxsize=1)
def _profile_devices() -> tuple[tuple[str, Path], ...]:
    """(device name from metadata.json, directory) of every bundled profile, read once."""
    return tuple((json.loads((p / "metadata.json").read_text()).get("device", ""), p) for p in bundled_profiles().values())


_DIR_CACHE: dict[tuple, KernelTables] = {}


def load_cached(path: str | Path) -> KernelTables:
    """`KernelTables.load(path)`, reused while the files under `path` are unchanged (path,
    names, sizes and modification times), so that many simulations of one directory load
    it once. Treat the result as read-only."""
    p = Path(path).expanduser().resolve()
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    key = (str(p), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()))
    kt = _DIR_CACHE.get(key)
    if kt is None:
        if len(_DIR_CACHE) > 8:
            _DIR_CACHE.clear()
        kt = _DIR_CACHE[key] = KernelTables.load(p)
    return kt


def device_matches(device: str, gpu_name) -> bool:
    """Whether kernel tables measured on `device` apply to `gpu_name` (a string or a GPUSpec)."""
    names = [gpu_name] if isinstance(gpu_name, str) else [
        getattr(gpu_name, "name", ""), getattr(gpu_name, "display_name", ""), *getattr(gpu_name, "aliases", ())]
    dev = _norm(device)
    ok = set(_DEVICE_ALIASES.get(dev, ())) | {dev, dev.removeprefix("nvidia")}
    return any(n and _norm(n) in ok for n in names)
