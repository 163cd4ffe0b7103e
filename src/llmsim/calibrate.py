"""Fit the roofline's efficiency parameters to measured kernel tables, with held-out error.

Reads AIConfigurator-format kernel tables (GEMM, context attention, generation
attention), predicts every row with `llmsim.cost.roofline` — the same formulas the
cost model uses — and fits `Efficiency` by robust least squares on log(pred/measured)
(Cauchy loss at a 5% scale: rows whose kernel an engine picks by an unmodelled heuristic
do not pull the physical parameters), in stages (`_STAGES`): GEMM parameters shared by all
formats on the 16-bit rows, then the fp8 and block-scaled fp8 format parameters on their
own rows, then prefill and decode attention.

How table rows map onto the formulas: block-scaled fp8 GEMMs ('fp8_block') get their own
format parameters (the cost model only ever uses per-tensor 'fp8'); an fp8 KV cache makes
TRT-LLM run an fp8 context FMHA even with bf16 activations; K and V heads have the same
size (the head_dim 192 rows are GQA models with sliding windows, not MLA). The GEMM tables
of TRT-LLM and vLLM are pooled: the model has no notion of the engine, so where their
kernels differ (fp8 GEMMs at small m differ by up to 2x) it predicts in between.

Held-out rows are whole *shapes* the fit never sees: GEMM rows grouped by (n, k, dtype),
attention rows by (heads, KV heads, head dim, window, KV dtype); a seeded random
fraction of groups is held out. `evaluate` reports median / p90 absolute percentage
error separately for training and held-out rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cost import roofline as rf
from .cost.ops import decode_attention_cost, gemm_bytes, prefill_attention_cost
from .dtypes import bytes_per_element, canonical
from .checks import is_int
from .errors import LlmsimError
from .hardware.spec import Efficiency, GPUSpec

KINDS = ("gemm", "context_attention", "generation_attention")

# columns each kind needs, and the op_name that identifies it
_COLUMNS = {
    "gemm": ("m", "n", "k", "gemm_dtype", "latency"),
    "context_attention": ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "window_size", "attn_dtype", "kv_cache_dtype", "latency"),
    "generation_attention": ("batch_size", "isl", "step", "num_heads", "num_key_value_heads", "head_dim", "window_size", "kv_cache_dtype", "latency"),
}

# Fitting stages, in order: (kind, rows, parameters with bounds). Parameters shared by all
# GEMM formats (tiles, split-K, HBM streaming, launch) are fitted on the 16-bit rows alone;
# the fp8 and block-scaled fp8 rows then fit only their own format parameters, so that
# the spread between engines' fp8 kernels cannot bend the shared hardware parameters.
_STAGES: list[tuple[str, str, dict[str, tuple[float, float]]]] = [
    ("gemm", "wide", {
        "gemm_peak_fraction": (0.3, 1.0),
        "gemm_k_half_saturation": (0.0, 4096.0),
        "gemm_launch_s": (0.0, 50e-6),
        "gemm_splitk_min_flops": (1e5, 1e9),
        "mem_bw_fraction": (0.3, 1.0),
        "mem_ramp_s": (0.0, 50e-6),
        "mem_half_saturation_bytes": (0.0, 1e9),
    }),
    ("gemm", "fp8", {
        "gemm_lowp_peak_fraction": (0.2, 1.0),
        "gemm_lowp_launch_s": (0.0, 50e-6),
        "gemm_lowp_quant_bw_fraction": (0.05, 1.0),
    }),
    ("gemm", "fp8_block", {
        "gemm_block_fp8_peak_fraction": (0.2, 1.0),
        "gemm_block_fp8_launch_s": (0.0, 50e-6),
        "gemm_block_fp8_quant_bw_fraction": (0.05, 1.0),
    }),
    ("context_attention", "all", {
        "attn_peak_fraction": (0.1, 1.0),
        "attn_lowp_peak_fraction": (0.1, 1.0),
        "attn_softmax_flops": (0.0, 4096.0),
        "attn_row_overhead_pairs": (0.0, 8192.0),
        "attn_launch_s": (0.0, 50e-6),
        "attn_block_s": (0.0, 50e-6),
    }),
    ("generation_attention", "all", {
        "decode_attn_bw_fraction": (0.2, 1.0),
        "decode_attn_cta_bw_fraction": (0.001, 1.0),
        "decode_attn_setup_exposed": (0.0, 1.0),
        "decode_attn_ramp_s": (0.0, 100e-6),
        "decode_attn_ramp_half_bytes": (1e5, 1e10),
        "decode_attn_launch_s": (0.0, 50e-6),
        "decode_attn_block_s": (0.0, 50e-6),
        "decode_attn_gqa_block_s": (0.0, 50e-6),
        "decode_attn_gqa_lowp_block_s": (0.0, 50e-6),
        "decode_attn_gqa_lowp_launch_s": (0.0, 50e-6),
        "decode_attn_split_min_tokens": (16.0, 65536.0),
        "decode_attn_split_s": (0.0, 50e-6),
    }),
]


# Robust loss on log(pred / measured): rows whose kernel an engine picks by some
# unmodelled heuristic should not pull the physical parameters, so large residuals are
# down-weighted (Cauchy) beyond a scale of ~5%.
_LOSS, _F_SCALE = "cauchy", 0.05


def _stage_rows(kind: str, subset: str, rows: "Rows") -> np.ndarray:
    if subset == "all":
        return np.ones(len(rows["latency"]), bool)
    raw = np.asarray(rows["gemm_dtype"]).astype(str)
    if subset == "fp8_block":
        return raw == "fp8_block"
    canon = np.array([canonical(x) for x in raw])
    if subset == "wide":
        return np.isin(canon, ("bf16", "fp16", "fp32"))
    return (canon == subset) & (raw != "fp8_block")


Rows = dict[str, np.ndarray]


def _parquet_files(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, (str, Path)) for p in paths):
        raise LlmsimError(f"kernel tables are read from file or directory paths, got {paths!r}"[:200],
                          hint="e.g. ['../shared/data/kernels/h100'] or a directory written by `llmsim profile --out DIR`")
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.parquet"))
        elif p.is_file():
            files.append(p)
        else:
            raise LlmsimError(f"no such file or directory: {p}")
    return files


def _schema_names(f: Path) -> set[str]:
    """Column names of parquet file `f`; LlmsimError naming it if it is not a readable parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return set(pq.read_schema(f).names)
    except (pa.ArrowException, OSError) as e:
        raise LlmsimError(f"{f} is not a readable parquet file ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                          hint="kernel tables are AIConfigurator-format parquet files (gemm_perf, context_attention_perf, "
                               "generation_attention_perf, nccl_perf); end-to-end benchmark rows are a silicon CSV named *.csv") from None


def as_gpu(gpu: GPUSpec | str) -> GPUSpec:
    """A GPUSpec as given (no copy: the fits call this per prediction), or a catalog name / GPU
    file resolved (`get_gpu`, which refuses anything else)."""
    if isinstance(gpu, GPUSpec):
        return gpu
    from .hardware.catalog import get_gpu

    return get_gpu(gpu)


def check_seed(seed) -> int:
    """`seed` as an int, or LlmsimError unless it is an integer >= 0 (numpy's generators take no other)."""
    if not is_int(seed) or seed < 0:
        raise LlmsimError(f"seed must be a non-negative integer, got {seed!r}",
                          hint="the seed picks the cross-validation folds (and subsamples); any integer >= 0, e.g. 0")
    return int(seed)


def check_max_rows(max_rows) -> int | None:
    """`max_rows` (rows per fitting stage) as an int, or None for every row; LlmsimError unless it is an
    integer >= 1 (0 rows would fit nothing and report the starting spec as calibrated)."""
    if max_rows is None:
        return None
    if not is_int(max_rows) or max_rows < 1:
        raise LlmsimError(f"max_rows must be an integer >= 1 (rows per fitting stage), got {max_rows!r}",
                          hint="e.g. --max-rows 5000: larger fits more rows, more slowly")
    return int(max_rows)


def read_kernel_tables(paths: list[str | Path], required: bool = True) -> dict[str, Rows]:
    """Rows of every recognised AIConfigurator-format table in `paths` (files or directories), by
    kind; with `required`, an error if there is none."""
    import pyarrow.parquet as pq

    files = _parquet_files(paths)
    out: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in KINDS}
    for f in files:
        names = _schema_names(f)
        for kind, cols in _COLUMNS.items():
            if set(cols) <= names:
                t = pq.read_table(f, columns=list(cols) + (["op_name"] if "op_name" in names else []))
                d = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
                if "op_name" in d and not np.all(d["op_name"] == kind if kind != "gemm" else d["op_name"] == "gemm"):
                    continue
                out[kind].append(d)
    merged = {k: {c: np.concatenate([d[c] for d in v]) for c in v[0]} for k, v in out.items() if v}
    merged = {k: v for k, v in merged.items() if len(v["latency"])}  # a table with the columns but no rows
    for kind, rows in merged.items():
        lat = np.asarray(rows["latency"], dtype=float)
        bad = ~(np.isfinite(lat) & (lat > 0))
        if bad.any():
            raise LlmsimError(f"{int(bad.sum()):,} of the {len(lat):,} {kind} rows have a latency that is not a positive number "
                              f"(NaN, 0 or negative), e.g. {float(lat[bad][0]):g} ms",
                              hint="a measurement is a positive time in ms; drop or fix those rows")
    if not merged and required:
        raise LlmsimError(
            "no kernel table recognised",
            hint="expected AIConfigurator-format parquet files (gemm_perf, context_attention_perf, generation_attention_perf)",
        )
    return merged


def predict(kind: str, rows: Rows, gpu: GPUSpec | str, e: Efficiency | None = None) -> np.ndarray:
    """Roofline seconds for every row of a kernel table."""
    gpu = as_gpu(gpu)
    e = e or gpu.efficiency
    bw, sms = gpu.memory_bandwidth_bytes_per_s, gpu.num_sms
    if kind == "gemm":
        m, n, k = (rows[c].astype(float) for c in ("m", "n", "k"))
        dt = np.array([x if x == "fp8_block" else canonical(x) for x in rows["gemm_dtype"]])
        out = np.empty(len(m))
        for d in np.unique(dt):
            s = dt == d
            eb = bytes_per_element(canonical(d))
            nbytes = gemm_bytes(m[s], n[s], k[s], eb, eb)
            out[s] = rf.gemm_time_s(m[s], n[s], k[s], nbytes, gpu.peak_flops_per_s(d), bw, e, sms, d)
        return out
    b = rows["batch_size"].astype(float)
    nh, nkv, d = (rows[c].astype(float) for c in ("num_heads", "num_key_value_heads", "head_dim"))
    w = rows["window_size"].astype(float)
    kvb = np.array([bytes_per_element(x) for x in rows["kv_cache_dtype"]])
    # K and V heads have the same size: the head_dim 192 rows are GQA models with sliding windows
    # (not MLA, whose value head is smaller)
    d_v = d
    kv_tok = nkv * (d + d_v) * kvb
    if kind == "context_attention":
        s = rows["isl"].astype(float)
        win = np.where(w > 0, np.minimum(w, s), s)
        pairs = b * (win * (win + 1) / 2 + (s - win) * win)
        flops, nbytes = prefill_attention_cost(pairs, b * s, b * win, nh, nkv, d, d_v, kv_tok)
        # TRT-LLM runs an fp8 FMHA whenever the KV cache (or the activations) are fp8
        lowp = (np.array([canonical(x) for x in rows["attn_dtype"]]) == "fp8") | (kvb < 2)
        out = np.empty(len(b))
        p16 = gpu.peak_flops_per_s("bf16")
        for lp in (False, True):
            sel = lowp == lp
            if sel.any():
                out[sel] = rf.prefill_attention_time_s(
                    flops[sel], nbytes[sel], (pairs * nh)[sel], (b * nh)[sel], s[sel], win[sel], ((w > 0) & (w < s)).astype(float)[sel],
                    gpu.peak_flops_per_s("fp8" if lp else "bf16"), p16, bw, e, sms, lowp=lp)
        return out
    if kind == "generation_attention":
        ctx = rows["isl"].astype(float) + rows["step"].astype(float)
        ctx = np.where(w > 0, np.minimum(ctx, w), ctx)
        flops, nbytes = decode_attention_cost(b, b * ctx, nh, d, d_v, kv_tok)
        out = np.empty(len(b))
        for lp in (False, True):
            sel = (kvb < 2) == lp
            if sel.any():
                out[sel] = rf.decode_attention_time_s(flops[sel], nbytes[sel], b[sel], ctx[sel], nh[sel], nkv[sel], gpu.peak_flops_per_s("bf16"), bw, e, sms, lowp_kv=lp)
        return out
    raise ValueError(kind)


def measured_s(rows: Rows) -> np.ndarray:
    return rows["latency"].astype(float) * 1e-3  # tables are in milliseconds


def _group_keys(kind: str, rows: Rows) -> np.ndarray:
    cols = ("n", "k", "gemm_dtype") if kind == "gemm" else ("num_heads", "num_key_value_heads", "head_dim", "window_size", "kv_cache_dtype")
    return np.array(["|".join(map(str, t)) for t in zip(*(rows[c] for c in cols))])


def holdout_mask(kind: str, rows: Rows, frac: float = 0.3, seed: int = 0) -> np.ndarray:
    """True for rows whose shape group is held out (never used for fitting)."""
    keys = _group_keys(kind, rows)
    uniq = np.unique(keys)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(uniq, size=int(round(frac * len(uniq))), replace=False).tolist())
    return np.array([k in held for k in keys])


def ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred - meas) / meas * 100.0


@dataclass
class ErrorStats:
    n: int
    median_ape: float
    p90_ape: float

    def to_dict(self) -> dict:
        return {"n": self.n, "median_ape": self.median_ape, "p90_ape": self.p90_ape}


def stats(pred: np.ndarray, meas: np.ndarray) -> ErrorStats:
    if len(pred) == 0:
        return ErrorStats(0, math.nan, math.nan)
    a = ape(pred, meas)
    return ErrorStats(len(a), float(np.median(a)), float(np.percentile(a, 90)))


def _subsample(mask: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    idx = np.flatnonzero(mask)
    if limit is not None and len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    return idx


def fit_efficiency(gpu: GPUSpec | str, tables: dict[str, Rows], train: dict[str, np.ndarray] | None = None, seed: int = 0,
                   max_rows: int | None = 20_000) -> Efficiency:
    """Robust least-squares fit of the Efficiency parameters on the rows selected by `train`
    (all rows if None), stage by stage (`_STAGES`), starting from `gpu.efficiency`; at most
    `max_rows` rows per stage (seeded subsample; None: every row)."""
    gpu = as_gpu(gpu)
    from scipy.optimize import least_squares

    seed, max_rows = check_seed(seed), check_max_rows(max_rows)
    e = gpu.efficiency
    for kind, subset, bounds in _STAGES:
        if kind not in tables:
            continue
        rows = tables[kind]
        use = _stage_rows(kind, subset, rows) & (train[kind] if train else True)
        if not use.any():
            continue
        names = list(bounds)
        lo = np.array([bounds[n][0] for n in names])
        hi = np.array([bounds[n][1] for n in names])
        scale = np.maximum(np.abs(hi), 1e-12)
        sel = _subsample(use, max_rows, seed)
        sub = {c: v[sel] for c, v in rows.items()}
        meas = measured_s(sub)

        def resid(x: np.ndarray) -> np.ndarray:
            cand = e.model_copy(update=dict(zip(names, (x * scale).tolist())))
            return np.log(predict(kind, sub, gpu, cand) / meas) / math.sqrt(len(meas))

        x0 = np.clip(np.array([getattr(e, n) for n in names], float), lo, hi) / scale
        res = least_squares(resid, x0, bounds=(lo / scale, hi / scale), loss=_LOSS, f_scale=_F_SCALE, max_nfev=400)
        e = e.model_copy(update=dict(zip(names, (res.x * scale).tolist())))
    return Efficiency.model_validate(e.model_dump())


def evaluate(gpu: GPUSpec | str, tables: dict[str, Rows], held: dict[str, np.ndarray] | None = None, e: Efficiency | None = None) -> dict[str, dict[str, ErrorStats]]:
    """Median / p90 APE per kind, split into train and held-out rows."""
    gpu = as_gpu(gpu)
    out: dict[str, dict[str, ErrorStats]] = {}
    for kind, rows in tables.items():
        pred, meas = predict(kind, rows, gpu, e), measured_s(rows)
        h = held[kind] if held else np.zeros(len(meas), bool)
        out[kind] = {"train": stats(pred[~h], meas[~h]), "held_out": stats(pred[h], meas[h])}
    return out


# --------------------------------------------------------------------------- NCCL collectives

# (collective, GPUs, bytes, seconds) rows of a collective table; the fit below owns these
# Efficiency fields and their bounds (roofline.collective_time_s uses them).
COLLECTIVE_FIELDS: dict[str, tuple[float, float]] = {
    "collective_bw_fraction": (0.05, 1.0),
    "collective_latency_scale": (0.05, 20.0),
    "collective_allreduce_latency_scale": (0.05, 20.0),
    "collective_ramp_s": (0.0, 1e-3),
    "collective_ramp_half_bytes": (1e3, 1e10),
}
_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
# The spec-sheet alpha-beta model the fit replaced (llmsim before 2026-11-23): link bandwidth x 0.8,
# latency (1 + log2 g) L, 0.7 of it outside all_reduce, no ramp -- the fit's starting point and the
# baseline `benchmarks/validate_kernels.py` reports beside it
ALPHA_BETA_PRIOR = {"collective_bw_fraction": 0.8, "collective_latency_scale": 0.7,
                    "collective_allreduce_latency_scale": 1.0, "collective_ramp_s": 0.0}


@dataclass
class CollectiveRows:
    """Rows of an NCCL table: `op` (collective), `gpus`, `nbytes` (the per-rank buffer, bytes),
    `seconds` measured, `group` (collective|GPUs|element type: the unit held out together)."""

    op: np.ndarray
    gpus: np.ndarray
    nbytes: np.ndarray
    seconds: np.ndarray
    group: np.ndarray

    def take(self, mask: np.ndarray) -> "CollectiveRows":
        return CollectiveRows(self.op[mask], self.gpus[mask], self.nbytes[mask], self.seconds[mask], self.group[mask])


def read_collective_table(path: str | Path) -> CollectiveRows:
    """An AIConfigurator-format `*nccl_perf.parquet` (op_name, nccl_dtype, num_gpus,
    message_size in elements of nccl_dtype, latency in ms), every row with its dtype group.
    (`KernelTables.records("collective")` is the interpolation grid: it merges rows of equal
    byte size across dtypes -- 504 of the shared table's 1,008 -- so it cannot give the groups.)"""
    import pyarrow.parquet as pq

    from .cost.measured import _elem_bytes

    t = pq.read_table(path).to_pydict()
    missing = [c for c in _NCCL_COLUMNS if c not in t]
    if missing:
        raise LlmsimError(f"{path}: not an NCCL table, missing columns {missing}",
                          hint="expected AIConfigurator's *nccl_perf.parquet columns op_name, nccl_dtype, num_gpus, message_size, latency")
    op = np.array(t["op_name"], dtype=object)
    keep = np.isin(op, _COLLECTIVES)
    dt = np.array(t["nccl_dtype"], dtype=object)
    gpus = np.array(t["num_gpus"], dtype=np.int64)
    nbytes = np.array(t["message_size"], dtype=float) * np.array([_elem_bytes(str(x)) for x in dt])
    sec = np.array(t["latency"], dtype=float) * 1e-3
    group = np.array([f"{o}|{g}|{d}" for o, g, d in zip(op, gpus, dt)], dtype=object)
    return CollectiveRows(op[keep], gpus[keep], nbytes[keep], sec[keep], group[keep])


_NCCL_COLUMNS = ("op_name", "nccl_dtype", "num_gpus", "message_size", "latency")


def read_collective_tables(paths: list[str | Path]) -> CollectiveRows | None:
    """The rows of every NCCL table (`*nccl_perf.parquet`: the files with the NCCL columns) in
    `paths` (files or directories), concatenated; None if there is none."""
    parts = [read_collective_table(f) for f in _parquet_files(paths) if set(_NCCL_COLUMNS) <= _schema_names(f)]
    parts = [r for r in parts if len(r.seconds)]
    if not parts:
        return None
    return CollectiveRows(*(np.concatenate([getattr(r, c) for r in parts]) for c in ("op", "gpus", "nbytes", "seconds", "group")))


def read_measurements(paths: list[str | Path]) -> tuple[dict[str, Rows], CollectiveRows | None]:
    """Everything `kfold_calibrate` can fit in `paths`: the kernel tables by kind and the NCCL
    rows; an error naming the paths if there is neither."""
    tables, coll = read_kernel_tables(paths, required=False), read_collective_tables(paths)
    if not tables and coll is None:
        raise LlmsimError("no kernel table recognised in " + ", ".join(str(p) for p in paths),
                          hint="expected AIConfigurator-format parquet files (gemm_perf, context_attention_perf, "
                               "generation_attention_perf, nccl_perf) or an `llmsim profile` directory")
    return tables, coll


def collective_holdout_mask(rows: CollectiveRows, frac: float = 0.3, seed: int = 0) -> np.ndarray:
    """True for rows whose (collective, GPUs, element type) group is held out."""
    uniq = np.unique(rows.group)
    held = set(np.random.default_rng(seed).choice(uniq, size=int(round(frac * len(uniq))), replace=False).tolist())
    return np.array([g in held for g in rows.group])


def predict_collectives(gpu: GPUSpec | str, rows: CollectiveRows, e: Efficiency | None = None) -> np.ndarray:
    """Roofline time of every row on the link the cost model gives its group size
    (`cost.model.roofline_collective_s`: NVLink inside an NVLink domain, else PCIe or the NICs)."""
    gpu = as_gpu(gpu)
    from .cost.model import roofline_collective_s

    e = e or gpu.efficiency
    out = np.empty(len(rows.seconds))
    for g in np.unique(rows.gpus):
        for op in np.unique(rows.op):
            m = (rows.gpus == g) & (rows.op == op)
            if m.any():
                out[m] = roofline_collective_s(gpu, str(op), rows.nbytes[m], int(g), e)[0]
    return out


def fit_collectives(gpu: GPUSpec | str, rows: CollectiveRows, train: np.ndarray | None = None) -> Efficiency:
    """Robust least squares (soft-L1 on log(pred / measured), 10% scale) of `COLLECTIVE_FIELDS`
    on the rows selected by `train` (all if None), starting from `gpu.efficiency`."""
    gpu = as_gpu(gpu)
    from scipy.optimize import least_squares

    use = np.ones(len(rows.seconds), bool) if train is None else train
    if not use.any():
        raise LlmsimError("no collective rows to fit on")
    sub = rows.take(use)
    names = list(COLLECTIVE_FIELDS)
    # fit in log space (every parameter is a positive scale); the ramp starts above its lower bound
    lo = np.log([max(COLLECTIVE_FIELDS[n][0], 1e-9) for n in names])
    hi = np.log([COLLECTIVE_FIELDS[n][1] for n in names])
    x0 = np.clip(np.log([max(getattr(gpu.efficiency, n), 1e-6) for n in names]), lo + 1e-9, hi - 1e-9)

    def resid(x: np.ndarray) -> np.ndarray:
        e = gpu.efficiency.model_copy(update=dict(zip(names, np.exp(x).tolist())))
        return np.log(predict_collectives(gpu, sub, e) / sub.seconds)

    r = least_squares(resid, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1)
    return gpu.efficiency.model_copy(update={n: float(f"{v:.3g}") for n, v in zip(names, np.exp(r.x))})


# --------------------------------------------------------------------------- k-fold calibration


@dataclass
class CalibrationReport:
    """Held-out error of three models on the same rows, per table kind:
    'uncalibrated' (spec-sheet roofline), 'shipped' (the GPU's current Efficiency) and
    'calibrated' (k-fold cross-validated: every row predicted by a fit that never saw its shape)."""

    gpu: str
    folds: int
    errors: dict[str, dict[str, ErrorStats]]
    efficiency: Efficiency  # fitted on all rows

    def to_dict(self) -> dict:
        return {"gpu": self.gpu, "folds": self.folds,
                "errors": {k: {m: s.to_dict() for m, s in v.items()} for k, v in self.errors.items()},
                "efficiency": self.efficiency.model_dump()}


_GROUP_TEXT = {"gemm": "(n, k, dtype)", "context_attention": "(heads, KV heads, head dim, window, KV dtype)",
               "generation_attention": "(heads, KV heads, head dim, window, KV dtype)"}


def fold_ids(kind: str, rows: Rows, k: int, seed: int = 0) -> np.ndarray:
    """Fold index per row; all rows of one shape group share a fold."""
    return _folds(_group_keys(kind, rows), k, seed)


def _folds(keys: np.ndarray, k: int, seed: int) -> np.ndarray:
    uniq, inv = np.unique(keys, return_inverse=True)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    return (perm % k)[inv]


def kfold_collectives(gpu: GPUSpec | str, rows: CollectiveRows, k: int = 5, seed: int = 0) -> tuple[dict[str, ErrorStats], Efficiency]:
    """Cross-validated fit of the collective fields (`COLLECTIVE_FIELDS`) to an NCCL table: each
    of min(k, groups) folds of (collective, GPUs, element type) groups is predicted by a fit on the
    others. Returns the errors of the spec-sheet roofline ('uncalibrated'), the GPU's current
    values ('shipped') and the out-of-fold predictions ('calibrated'), and the fit on all rows."""
    gpu = as_gpu(gpu)
    from .hardware.spec import uncalibrated_efficiency

    seed = check_seed(seed)
    n_groups = len(np.unique(rows.group))
    if n_groups < 2:
        raise LlmsimError(f"the NCCL rows hold {n_groups} (collective, GPUs, element type) group: cross-validation needs at least 2",
                          hint="profile more than one collective or group size (llmsim profile --kinds collective on 4+ GPUs)")
    folds = _folds(rows.group, min(k, n_groups), seed)
    oof = np.full(len(rows.seconds), np.nan)
    for f in np.unique(folds):
        e = fit_collectives(gpu, rows, folds != f)
        held = folds == f
        oof[held] = predict_collectives(gpu, rows.take(held), e)
    errors = {"uncalibrated": stats(predict_collectives(gpu, rows, uncalibrated_efficiency()), rows.seconds),
              "shipped": stats(predict_collectives(gpu, rows), rows.seconds),
              "calibrated": stats(oof, rows.seconds)}
    return errors, fit_collectives(gpu, rows)


def kfold_calibrate(gpu: GPUSpec | str, tables: dict[str, Rows], k: int = 5, seed: int = 0, max_rows: int | None = 5000,
                    collectives: CollectiveRows | None = None) -> CalibrationReport:
    """Cross-validated fit of `Efficiency` to measured kernel tables (and, given `collectives`,
    of its collective fields to an NCCL table: `kfold_collectives`, reported as kind 'collective').

    Each of k folds (shape groups, seeded) is predicted by a fit on the other k-1; the
    reported 'calibrated' error is over those out-of-fold predictions only. The returned
    efficiency is then fitted on all rows.
    """
    gpu = as_gpu(gpu)
    from .hardware.spec import uncalibrated_efficiency

    if not is_int(k) or k < 2:
        raise LlmsimError(f"k-fold calibration needs an integer k ≥ 2 folds, got {k!r}")
    k = int(k)
    seed, max_rows = check_seed(seed), check_max_rows(max_rows)
    if not tables and collectives is None:
        raise LlmsimError("nothing to calibrate on: no kernel table and no NCCL table",
                          hint="pass AIConfigurator-format parquet files or an `llmsim profile` directory")
    for kind, rows in tables.items():
        n_groups = len(np.unique(_group_keys(kind, rows)))
        if n_groups < 2:  # the one fold holding every row would be fitted on nothing and report the shipped values
            raise LlmsimError(f"the {kind} rows hold {n_groups} shape group ({_GROUP_TEXT[kind]}): cross-validation needs at least 2",
                              hint="measure more than one shape (llmsim profile measures many), or leave that table out")
    # a kind with fewer shape groups than folds spreads them over that many folds, so no fold's
    # training set lacks the kind (with fewer, a fold's fit would see none of its rows)
    folds = {kind: fold_ids(kind, rows, min(k, len(np.unique(_group_keys(kind, rows)))), seed) for kind, rows in tables.items()}
    oof = {kind: np.full(len(rows["latency"]), np.nan) for kind, rows in tables.items()}
    n_folds = max((int(ids.max()) + 1 for ids in folds.values()), default=0)  # a k past every kind's groups: no empty fits
    for f in range(n_folds):
        e = fit_efficiency(gpu, tables, {kind: folds[kind] != f for kind in tables}, seed=seed, max_rows=max_rows)
        for kind, rows in tables.items():
            held = folds[kind] == f
            if held.any():
                sub = {c: v[held] for c, v in rows.items()}
                oof[kind][held] = predict(kind, sub, gpu, e)
    errors: dict[str, dict[str, ErrorStats]] = {}
    for kind, rows in tables.items():
        meas = measured_s(rows)
        errors[kind] = {
            "uncalibrated": stats(predict(kind, rows, gpu, uncalibrated_efficiency()), meas),
            "shipped": stats(predict(kind, rows, gpu, gpu.efficiency), meas),
            "calibrated": stats(oof[kind], meas),
        }
    final = fit_efficiency(gpu, tables, None, seed=seed, max_rows=max_rows)
    if collectives is not None:  # the kernel stages own no collective field: the two fits are independent
        errors["collective"], ce = kfold_collectives(gpu, collectives, k, seed)
        final = final.model_copy(update={n: getattr(ce, n) for n in COLLECTIVE_FIELDS})
    return CalibrationReport(gpu.name, k, errors, final)


def write_spec(gpu: GPUSpec, efficiency: Efficiency, path: str | Path, note: str = "", base: str | None = None,
               aliases: tuple[str, ...] = ()) -> Path:
    """A GPU spec file named '<gpu>-calibrated' that inherits `base` (a catalog id or a GPU file;
    default `gpu.name`, right when `gpu` came from the catalog) and overrides its efficiency;
    `aliases` are names it also answers to (kernel tables measured on them apply)."""
    import yaml

    path = Path(path).expanduser()
    if path.is_dir():
        raise LlmsimError(f"{path} is a directory; the calibrated spec (--out) needs a file name",
                          hint=f"e.g. {path / (gpu.name + '-calibrated.yaml')}")
    data = {"base": base or gpu.name, "name": f"{gpu.name}-calibrated", **({"aliases": list(aliases)} if aliases else {}),
            "source": f"{gpu.source} | efficiency calibrated by llmsim calibrate {note}".strip(),
            "efficiency": {k: (float(v) if isinstance(v, float) else v) for k, v in efficiency.model_dump().items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    except OSError as e:
        raise LlmsimError(f"cannot write the calibrated spec {path}: {e.strerror or e}",
                          hint="give a writable file path for --out") from None
    return path
