"""Fit a GPU spec's efficiency to end-to-end serving benchmarks, with held-out error.

`llmsim.calibrate` fits the roofline to *kernel* measurements. Many users have no kernel
tables, only end-to-end benchmark results (aiperf / genai-perf / `vllm bench serve` runs,
one row per model x layout x ISL/OSL x concurrency) -- the silicon CSV format of
`llmsim validate silicon`. This module fits the same `Efficiency` to those rows.

What is fitted. Four scale factors, each applied to one group of `Efficiency` fields
(`KNOBS`), so that the result is an ordinary GPU spec:

    compute  s_c: every *_peak_fraction (GEMM, fp8 GEMM, FMHA) divided by s_c
    memory   s_m: every HBM-bandwidth fraction divided by s_m
    latency  s_l: every fixed per-kernel time (launch floors, wave set-up, ramps) times s_l
    network  s_n: comm_bw_fraction and collective_bw_fraction divided by s_n

s > 1 means the hardware is slower than the spec says on that resource. Each s stays in
[0.5, 2], the surrogate's range (below); a fraction cannot exceed 1 (peak), so s_c and s_m
are also bounded below by the largest fraction of their group.
Operators timed from measured kernel tables (bundled H100 tables, `--kernels`) are not
changed by any knob: only the roofline part of a prediction moves.

How (one simulation per row per knob, then a cheap fit, then exact re-simulation):

1. Every row is simulated exactly as `llmsim validate silicon` does (same mapping rules,
   closed loop, warm-up round excluded) with the shipped spec, giving y0, and twice more per
   knob, with that knob at 0.5 and at 2 (a fraction knob's low probe stops at its bound).
   The surrogate of a row's mean TTFT and TPOT is piecewise linear in each knob through
   those three points, the knobs' effects adding up. A closed loop's schedule does not change
   when every time is scaled, so it stays close over the fitted range, which is limited to
   the probes' range [0.5, 2] (tests check it against exact simulation). Knobs interact
   (a kernel at its latency floor does not speed up with more bandwidth), so far from 1 the
   surrogate drifts: the report gives its error against the exact in-sample simulation.
2. s is fitted by robust least squares (Cauchy loss, 10% scale) on log(y(s) / measured) of
   the fitting metric (TPOT by default: TTFT also carries client/front-end queueing that
   hardware efficiency should not absorb) over the training rows.
3. Held-out error is exact: k folds by *configuration* (model x system x backend x mode x
   layout x precision -- rows of one deployment that differ only in ISL/OSL/concurrency
   stay together); each fold's rows are re-simulated with the spec fitted on the other
   folds. The in-sample error of the final fit (all rows) is re-simulated too and reported
   separately, never mixed with held-out error.

The written spec inherits its GPU (`base:`) and keeps the GPU's catalog name as an alias,
so bundled kernel tables of that GPU still apply -- the same model the fit evaluated.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .calibrate import ErrorStats, check_seed, stats
from .errors import LlmsimError
from .hardware.spec import Efficiency, GPUSpec

if TYPE_CHECKING:  # pragma: no cover
    from .serving.validate import _Plan

# knob -> (Efficiency fields, how the scale applies: 'divide' a fraction or 'multiply' a time)
KNOBS: dict[str, tuple[tuple[str, ...], str]] = {
    "compute": (("gemm_peak_fraction", "gemm_lowp_peak_fraction", "gemm_block_fp8_peak_fraction",
                 "attn_peak_fraction", "attn_lowp_peak_fraction"), "divide"),
    "memory": (("mem_bw_fraction", "decode_attn_bw_fraction", "decode_attn_cta_bw_fraction",
                "gemm_lowp_quant_bw_fraction", "gemm_block_fp8_quant_bw_fraction"), "divide"),
    "latency": (("gemm_launch_s", "gemm_lowp_launch_s", "gemm_block_fp8_launch_s", "mem_ramp_s", "attn_launch_s",
                 "attn_block_s", "decode_attn_ramp_s", "decode_attn_launch_s", "decode_attn_block_s",
                 "decode_attn_gqa_block_s", "decode_attn_gqa_lowp_block_s", "decode_attn_gqa_lowp_launch_s",
                 "decode_attn_split_s", "elementwise_launch_s", "collective_ramp_s"), "multiply"),
    "network": (("comm_bw_fraction", "collective_bw_fraction"), "divide"),
}
PROBE_LO, PROBE_HI = 0.5, 2.0  # knob values of the probe simulations: the surrogate's nodes and the fitted range
METRICS = ("tpot", "ttft", "both")
_F_SCALE = 0.10  # Cauchy loss scale on log error


def scale_efficiency(e: Efficiency, scales: dict[str, float]) -> Efficiency:
    """`e` with every knob group scaled (see `KNOBS`); fractions are capped at 1 (peak)."""
    upd: dict[str, float] = {}
    for knob, s in scales.items():
        fields, how = KNOBS[knob]
        for f in fields:
            v = getattr(e, f)
            upd[f] = min(1.0, v / s) if how == "divide" else v * s
    return Efficiency.model_validate({**e.model_dump(), **upd})


def knob_bounds(e: Efficiency) -> dict[str, tuple[float, float]]:
    """Allowed range of each knob: a fraction knob cannot push any field of its group above 1."""
    out = {}
    for knob, (fields, how) in KNOBS.items():
        lo = max(getattr(e, f) for f in fields) if how == "divide" else 0.0
        out[knob] = (max(lo, PROBE_LO), PROBE_HI)
    return out


def calibrated_gpu(gpu: GPUSpec, e: Efficiency) -> GPUSpec:
    """The spec `llmsim.calibrate.write_spec(gpu, e, ..., aliases=(gpu.name,))` writes, as an
    object: `gpu` with efficiency `e`, named '<gpu>-calibrated' and answering to '<gpu>' (so
    that its kernel tables still apply)."""
    return gpu.model_copy(update={"name": f"{gpu.name}-calibrated", "aliases": (gpu.name,), "display_name": "",
                                  "efficiency": e})


# ----------------------------------------------------------------------------- rows


@dataclass
class _Row:
    plan: _Plan
    config: str
    meas: dict[str, float | None]  # 'ttft' / 'tpot' ms


def silicon_rows(paths: list[str | Path], gpu: GPUSpec, *, system: str | None = None) -> tuple[list[_Row], dict[str, int]]:
    """The rows of silicon CSVs measured on `gpu` that the simulator can model, and a count of
    the others by reason."""
    from .hardware.catalog import get_gpu
    from .serving.validate import plan_rows, read_silicon_csv, reason_class

    rows: list[_Row] = []
    skipped: Counter[str] = Counter()
    names = {gpu.name, *gpu.aliases}
    for p in paths:
        mine = []
        for r in read_silicon_csv(p):
            sysname = (r.get("system") or "").strip()
            if system is not None:
                if sysname != system:
                    skipped["other system"] += 1
                    continue
            else:
                try:
                    if get_gpu(sysname).name not in names:
                        skipped["other GPU"] += 1
                        continue
                except LlmsimError:
                    skipped["unknown system"] += 1
                    continue
            mine.append(r)
        for plan in plan_rows(mine):  # (rules that compare rows see every row of the file on this GPU)
            if plan.dep_kwargs is None:
                skipped[reason_class(plan.reason)] += 1  # grouped as `validate silicon` groups them
                continue
            b = plan.base
            config = "|".join(str(b[k]) for k in ("model", "system", "backend", "mode", "layout", "precision"))
            rows.append(_Row(plan, config, {"ttft": b["measured_ttft_ms"], "tpot": b["measured_tpot_ms"]}))
    return rows, dict(skipped)


def simulate_pairs(pairs: list[tuple[_Row, GPUSpec]], jobs: int = 1) -> np.ndarray:
    """Mean TTFT and TPOT (ms) of each (row, spec) pair, simulated as `validate silicon` does:
    array [pair, (ttft, tpot)], NaN where the simulation fails."""
    from .serving.validate import run_plans

    def ms(x) -> float:
        return math.nan if x is None else float(x)

    reports = run_plans([(r.plan, {"gpu": g}) for r, g in pairs], jobs)
    return np.array([[ms(x["predicted_ttft_ms"]), ms(x["predicted_tpot_ms"])] if x["status"] == "ok" else [math.nan, math.nan]
                     for x in reports], dtype=float).reshape(len(pairs), 2)


def simulate_rows(rows: list[_Row], gpus: list[GPUSpec], jobs: int = 1) -> np.ndarray:
    """Every row under each spec: array [spec, row, (ttft, tpot)]."""
    out = simulate_pairs([(r, g) for g in gpus for r in rows], jobs)
    return out.reshape(len(gpus), len(rows), 2)


# ----------------------------------------------------------------------------- fit


_COLUMNS = {"ttft": [0], "tpot": [1], "both": [0, 1]}  # fitted metric -> columns of [row, (ttft, tpot)]


@dataclass
class Surrogate:
    """Piecewise-linear model of every row's (TTFT, TPOT) in the knobs, from probe simulations:
    per knob, y moves linearly from y0 (all knobs 1) to the probe below 1 and to the probe
    above 1, and the knobs' effects add. y0: [row, 2]; lo / hi: [knob, row, 2]."""

    y0: np.ndarray
    s_lo: np.ndarray  # [knob] probe value below 1 (1.0: no probe, knob cannot go below 1)
    lo: np.ndarray
    s_hi: np.ndarray
    hi: np.ndarray

    def subset(self, mask: np.ndarray) -> "Surrogate":
        return Surrogate(self.y0[mask], self.s_lo, self.lo[:, mask], self.s_hi, self.hi[:, mask])

    def predict(self, s: np.ndarray) -> np.ndarray:
        y = self.y0.copy()
        for k, v in enumerate(s):
            if v >= 1.0:
                y += (self.hi[k] - self.y0) * ((v - 1.0) / (self.s_hi[k] - 1.0))
            elif self.s_lo[k] < 1.0:
                y += (self.lo[k] - self.y0) * ((1.0 - v) / (1.0 - self.s_lo[k]))
        return y


def fit_scales(sur: Surrogate, meas: np.ndarray, cols: list[int], bounds: dict[str, tuple[float, float]],
               knobs: list[str]) -> dict[str, float]:
    """Knob values minimising the robust log error of the surrogate against `meas` [row, 2]
    (columns `cols`: 0 TTFT, 1 TPOT)."""
    from scipy.optimize import least_squares

    m = meas[:, cols]
    ok = np.isfinite(m) & (m > 0) & np.isfinite(sur.y0[:, cols])
    ok &= np.all(np.isfinite(sur.lo[:, :, cols]), axis=0) & np.all(np.isfinite(sur.hi[:, :, cols]), axis=0)
    if not ok.any():
        raise LlmsimError("no row has both a prediction and a measurement of the fitted metric")
    mc = m[ok]
    floor = 1e-3 * sur.y0[:, cols][ok]
    lo = np.array([bounds[k][0] for k in knobs])
    hi = np.array([bounds[k][1] for k in knobs])

    def resid(x: np.ndarray) -> np.ndarray:
        y = sur.predict(x)[:, cols][ok]
        return np.log(np.maximum(y, floor) / mc) / math.sqrt(len(mc))

    x0 = np.clip(np.ones(len(knobs)), lo, hi)
    res = least_squares(resid, x0, bounds=(lo, hi + 1e-12), loss="cauchy", f_scale=_F_SCALE / math.sqrt(len(mc)), max_nfev=200)
    return dict(zip(knobs, map(float, res.x)))


def config_folds(rows: list[_Row], k: int, seed: int = 0) -> np.ndarray:
    """Fold per row; all rows of one configuration share a fold."""
    seed = check_seed(seed)
    keys = np.array([r.config for r in rows])
    uniq, inv = np.unique(keys, return_inverse=True)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    return (perm % k)[inv]


@dataclass
class ServingCalibrationReport:
    gpu: str
    folds: int
    metric: str
    rows: int
    configs: int
    skipped: dict[str, int]
    scales: dict[str, float]  # final fit, on all rows
    fold_scales: list[dict[str, float]]
    inactive: list[str]  # knobs no row is sensitive to (left at 1)
    errors: dict[str, dict[str, ErrorStats]]  # metric -> shipped / held_out / in_sample
    surrogate_median_ape: dict[str, float]  # median |surrogate - exact| / exact x 100 at the final fit, per metric
    by_backend: dict[str, dict[str, dict[str, ErrorStats]]]
    efficiency: Efficiency
    per_row: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        def e(d):
            return {m: {k: s.to_dict() for k, s in v.items()} for m, v in d.items()}

        return {"gpu": self.gpu, "folds": self.folds, "metric": self.metric, "rows": self.rows, "configs": self.configs,
                "skipped": self.skipped, "scales": self.scales, "fold_scales": self.fold_scales, "inactive": self.inactive,
                "errors": e(self.errors), "surrogate_median_ape": self.surrogate_median_ape, "by_backend": {b: e(v) for b, v in self.by_backend.items()},
                "efficiency": self.efficiency.model_dump()}


def kfold_calibrate_serving(gpu: GPUSpec, rows: list[_Row], *, k: int = 5, metric: str = "tpot", seed: int = 0,
                            jobs: int = 1, skipped: dict[str, int] | None = None) -> ServingCalibrationReport:
    """k-fold cross-validated fit of the four efficiency knobs to end-to-end rows (module docstring)."""
    if metric not in METRICS:
        raise LlmsimError(f"unknown metric {metric!r}", hint=f"use one of {', '.join(METRICS)}")
    if k < 2:
        raise LlmsimError(f"k-fold calibration needs k ≥ 2 folds, got {k}")
    seed = check_seed(seed)  # before any simulation
    if not rows:
        raise LlmsimError(f"no benchmark row to calibrate {gpu.name} on",
                          hint="the rows' `system` must name this GPU (or pass --system); see `llmsim validate silicon` for why rows are skipped")
    n_conf = len({r.config for r in rows})
    if n_conf < k:
        raise LlmsimError(f"{n_conf} configuration(s) cannot be split into {k} folds", hint=f"use --folds {max(2, n_conf)} (or fewer), or add rows of other configurations")

    knobs = list(KNOBS)
    e0 = gpu.efficiency
    bounds = knob_bounds(e0)
    s_lo = np.array([min(1.0, max(PROBE_LO, bounds[kn][0])) for kn in knobs])
    s_hi = np.full(len(knobs), PROBE_HI)
    probe_specs = [gpu.model_copy(update={"efficiency": scale_efficiency(e0, {kn: v})})
                   for v_arr in (s_lo, s_hi) for kn, v in zip(knobs, v_arr) if v != 1.0]
    sims = simulate_rows(rows, [gpu, *probe_specs], jobs)
    y0 = sims[0]
    it = iter(sims[1:])
    lo_sims = np.stack([next(it) if v != 1.0 else y0 for v in s_lo])
    hi_sims = np.stack([next(it) for _ in s_hi])
    sur_all = Surrogate(y0, s_lo, lo_sims, s_hi, hi_sims)
    meas = np.array([[np.nan if r.meas[m] is None else r.meas[m] for m in ("ttft", "tpot")] for r in rows], float)
    cols = _COLUMNS[metric]
    spread = np.maximum(np.abs(hi_sims - y0[None]), np.abs(lo_sims - y0[None]))[:, :, cols].reshape(len(knobs), -1)
    sens = np.nanmax(spread / np.maximum(np.abs(y0[:, cols]).ravel(), 1e-12), axis=1)  # largest relative move per knob
    active = [kn for kn, v in zip(knobs, sens) if v > 1e-4]
    inactive = [kn for kn in knobs if kn not in active]
    act = [knobs.index(kn) for kn in active]

    def fit(mask: np.ndarray) -> dict[str, float]:
        if not active:
            return {kn: 1.0 for kn in knobs}
        sub = sur_all.subset(mask)
        sub = Surrogate(sub.y0, sub.s_lo[act], sub.lo[act], sub.s_hi[act], sub.hi[act])
        s = fit_scales(sub, meas[mask], cols, bounds, active)
        return {kn: s.get(kn, 1.0) for kn in knobs}

    folds = config_folds(rows, k, seed)
    fold_scales = [fit(folds != f) for f in range(k)]
    final = fit(np.ones(len(rows), bool))
    e_final = scale_efficiency(e0, final)
    fold_specs = [calibrated_gpu(gpu, scale_efficiency(e0, s)) for s in fold_scales]
    final_spec = calibrated_gpu(gpu, e_final)
    # exact re-simulation: each row under the spec fitted without its fold, and under the final spec
    both = simulate_pairs([(r, fold_specs[folds[i]]) for i, r in enumerate(rows)] + [(r, final_spec) for r in rows], jobs)
    held, insample = both[: len(rows)], both[len(rows):]

    def st(pred: np.ndarray, col: int, sel: np.ndarray) -> ErrorStats:
        p, m = pred[sel, col], meas[sel, col]
        ok = np.isfinite(p) & np.isfinite(m) & (m > 0)
        return stats(p[ok], m[ok])

    def block(sel: np.ndarray) -> dict[str, dict[str, ErrorStats]]:
        return {name: {"shipped": st(y0, c, sel), "held_out": st(held, c, sel), "in_sample": st(insample, c, sel)}
                for name, c in (("ttft", 0), ("tpot", 1))}

    surrogate = sur_all.predict(np.array([final[kn] for kn in knobs]))
    backends = np.array([r.plan.base["backend"] for r in rows])
    per_row = [{"id": r.plan.base["id"], "config": r.config, "fold": int(folds[i]),
                "measured_ttft_ms": meas[i, 0], "measured_tpot_ms": meas[i, 1],
                "shipped_ttft_ms": y0[i, 0], "shipped_tpot_ms": y0[i, 1],
                "held_out_ttft_ms": held[i, 0], "held_out_tpot_ms": held[i, 1],
                "in_sample_ttft_ms": insample[i, 0], "in_sample_tpot_ms": insample[i, 1],
                "surrogate_ttft_ms": surrogate[i, 0], "surrogate_tpot_ms": surrogate[i, 1]} for i, r in enumerate(rows)]
    return ServingCalibrationReport(
        gpu=gpu.name, folds=k, metric=metric, rows=len(rows), configs=n_conf, skipped=dict(skipped or {}),
        scales=final, fold_scales=fold_scales, inactive=inactive,
        errors=block(np.ones(len(rows), bool)),
        surrogate_median_ape={name: float(np.nanmedian(np.abs(surrogate[:, c] - insample[:, c]) / insample[:, c]) * 100)
                         for name, c in (("ttft", 0), ("tpot", 1))},
        by_backend={b: block(backends == b) for b in sorted(set(backends))},
        efficiency=e_final, per_row=per_row)
