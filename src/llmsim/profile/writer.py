"""Write a hardware profile directory that `KernelTables.load(DIR)` (and `--kernels DIR`) reads.

Files (AIConfigurator column format, latency in milliseconds, one row per shape):

* ``gemm_perf.parquet``: framework, version, device, op_name='gemm', kernel_source,
  gemm_dtype ('bfloat16' | 'fp8'), m, n, k, latency
* ``context_attention_perf.parquet``: framework, version, device, op_name, kernel_source,
  batch_size, isl, num_heads, num_key_value_heads, head_dim, window_size=0, beam_width=1,
  attn_dtype, kv_cache_dtype ('bfloat16'), step=0, latency
* ``generation_attention_perf.parquet``: the same columns with op_name
  'generation_attention', isl=1 and step = kv_len - 1 (the KV length is isl + step)
* ``nccl_perf.parquet``: framework, version (NCCL), device, op_name, kernel_source='NCCL',
  nccl_dtype='bfloat16', num_gpus, message_size (elements of nccl_dtype), latency

and, which the kernel-table loader skips:

* ``elementwise_bandwidth.parquet``: RMSNorm / copy time and effective bandwidth
* ``measurements.parquet``: every shape with median, p10, p90, repeats, flush, errors
* ``metadata.json``: device, driver, CUDA / torch / library versions, clocks, date,
  budget, number of points, llmsim version.

A table of a kind measured in this run replaces the one in the directory; tables of
other kinds are kept (so collectives measured in a separate torchrun run stay next to
the single-GPU tables).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import LlmsimError
from .plan import Point

__all__ = ["EXTRA_FILES", "METADATA_FILE", "TABLE_FILES", "Result", "write_profile"]

TABLE_FILES = {
    "gemm": "gemm_perf.parquet",
    "context_attention": "context_attention_perf.parquet",
    "generation_attention": "generation_attention_perf.parquet",
    "collective": "nccl_perf.parquet",
}
ELEMENTWISE_FILE = "elementwise_bandwidth.parquet"
MEASUREMENTS_FILE = "measurements.parquet"
METADATA_FILE = "metadata.json"
EXTRA_FILES = (ELEMENTWISE_FILE, MEASUREMENTS_FILE, METADATA_FILE)
_TABLE_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp8": "fp8"}


@dataclass
class Result:
    """One measured shape. Times in seconds; `latency_s` is the median (None: failed)."""

    point: Point
    latency_s: float | None
    p10_s: float | None = None
    p90_s: float | None = None
    repeats: int = 0
    inner: int = 0
    flushed: bool = False
    source: str = ""
    error: str | None = None
    wall_s: float | None = None
    phase: str = ""

    @property
    def ok(self) -> bool:
        return self.latency_s is not None and math.isfinite(self.latency_s) and self.latency_s > 0


def _ok_latency_s(r: Result) -> float:
    """The latency of a result that is `ok` (measured: finite and > 0)."""
    assert r.latency_s is not None
    return r.latency_s


def _ms(x: float | None) -> float:
    return float(x) * 1e3 if x is not None and math.isfinite(x) else float("nan")


def _write_table(path: Path, cols: dict[str, tuple[str, list]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    arrays = {name: pa.array(vals, type=types[t]) for name, (t, vals) in cols.items()}
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table(arrays), tmp)
    tmp.replace(path)


def _rows(results: Iterable[Result], kind: str) -> list[Result]:
    return sorted((r for r in results if r.point.kind == kind and r.ok), key=lambda r: r.point)


def write_profile(out_dir: str | Path, results: Sequence[Result], *, device: str, framework: str = "torch",
                  version: str = "", nccl_version: str = "", metadata: dict[str, Any] | None = None) -> Path:
    """Write the tables of `results` (and metadata.json) into `out_dir`; returns the directory.

    `device` is the GPU name stored in every row (as torch reports it, e.g. 'NVIDIA H100 80GB
    HBM3'); `framework`/`version` name the software that ran the kernels (default 'torch' and
    the torch version); `nccl_version` goes into the collective table's version column.
    Only successful measurements are written to the kernel tables.
    """
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LlmsimError(f"cannot create the profile directory {str(out)!r}: {e}",
                          hint="pass --out a writable directory") from e
    fw, ver, dev = str(framework), str(version), str(device)
    written: dict[str, int] = {}
    kinds_run = sorted({r.point.kind for r in results})

    def common(n: int, op: str, sources: list[str], v: str = ver) -> dict[str, tuple[str, list]]:
        return {"framework": ("str", [fw] * n), "version": ("str", [v] * n), "device": ("str", [dev] * n),
                "op_name": ("str", [op] * n), "kernel_source": ("str", sources)}

    rs = _rows(results, "gemm")
    if rs:
        _write_table(out / TABLE_FILES["gemm"], {
            **common(len(rs), "gemm", [r.source for r in rs]),
            "gemm_dtype": ("str", [_TABLE_DTYPE.get(r.point.series[0], r.point.series[0]) for r in rs]),
            "m": ("int", [r.point.coords[0] for r in rs]),
            "n": ("int", [r.point.coords[1] for r in rs]),
            "k": ("int", [r.point.coords[2] for r in rs]),
            "latency": ("float", [_ms(r.latency_s) for r in rs]),
        })
        written[TABLE_FILES["gemm"]] = len(rs)
    for kind in ("context_attention", "generation_attention"):
        rs = _rows(results, kind)
        if not rs:
            continue
        n = len(rs)
        gen = kind == "generation_attention"
        _write_table(out / TABLE_FILES[kind], {
            **common(n, kind, [r.source for r in rs]),
            "batch_size": ("int", [r.point.coords[0] for r in rs]),
            "isl": ("int", [1 if gen else r.point.coords[1] for r in rs]),
            "num_heads": ("int", [int(r.point.series[0]) for r in rs]),
            "num_key_value_heads": ("int", [int(r.point.series[1]) for r in rs]),
            "head_dim": ("int", [int(r.point.series[2]) for r in rs]),
            "window_size": ("int", [0] * n),
            "beam_width": ("int", [1] * n),
            "attn_dtype": ("str", ["bfloat16"] * n),
            "kv_cache_dtype": ("str", ["bfloat16"] * n),
            "step": ("int", [r.point.coords[1] - 1 if gen else 0 for r in rs]),
            "latency": ("float", [_ms(r.latency_s) for r in rs]),
        })
        written[TABLE_FILES[kind]] = n
    rs = _rows(results, "collective")
    if rs:
        _write_table(out / TABLE_FILES["collective"], {
            **common(len(rs), "", [r.source or "NCCL" for r in rs], v=str(nccl_version)),
            "op_name": ("str", [r.point.series[0] for r in rs]),
            "nccl_dtype": ("str", ["bfloat16"] * len(rs)),
            "num_gpus": ("int", [r.point.coords[0] for r in rs]),
            "message_size": ("int", [r.point.coords[1] // 2 for r in rs]),
            "latency": ("float", [_ms(r.latency_s) for r in rs]),
        })
        written[TABLE_FILES["collective"]] = len(rs)
    rs = _rows(results, "elementwise")
    if rs:
        nbytes = [_elementwise_bytes(r.point) for r in rs]
        _write_table(out / ELEMENTWISE_FILE, {
            "device": ("str", [dev] * len(rs)), "op_name": ("str", [r.point.series[0] for r in rs]),
            "kernel_source": ("str", [r.source for r in rs]), "dtype": ("str", ["bfloat16"] * len(rs)),
            "tokens": ("int", [r.point.coords[0] for r in rs]), "hidden": ("int", [r.point.coords[1] for r in rs]),
            "bytes": ("int", nbytes), "latency_ms": ("float", [_ms(r.latency_s) for r in rs]),
            "bandwidth_gbps": ("float", [b / _ok_latency_s(r) / 1e9 for b, r in zip(nbytes, rs)]),
        })
        written[ELEMENTWISE_FILE] = len(rs)
    if results:
        _write_measurements(out / MEASUREMENTS_FILE, results, kinds_run)

    meta = dict(metadata or {})
    meta.setdefault("device", dev)
    meta.setdefault("framework", fw)
    meta.setdefault("framework_version", ver)
    meta.setdefault("date", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    meta["kinds"] = kinds_run
    meta["points"] = {k: sum(1 for r in results if r.point.kind == k and r.ok) for k in kinds_run}
    meta["failed"] = {k: sum(1 for r in results if r.point.kind == k and not r.ok) for k in kinds_run}
    meta["files"] = written
    meta["elementwise_peak_bandwidth_gbps"] = _peak_bandwidth(results)
    _write_metadata(out / METADATA_FILE, meta)
    return out


def _elementwise_bytes(p: Point) -> int:
    tokens, hidden = p.coords
    return 2 * tokens * hidden * 2 + (hidden * 2 if p.series[0] == "rmsnorm" else 0)


def _peak_bandwidth(results: Sequence[Result]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in results:
        if r.point.kind == "elementwise" and r.ok:
            bw = _elementwise_bytes(r.point) / _ok_latency_s(r) / 1e9
            op = r.point.series[0]
            out[op] = round(max(out.get(op, 0.0), bw), 1)
    return out


def _write_measurements(path: Path, results: Sequence[Result], kinds_run: list[str]) -> None:
    import pyarrow.parquet as pq

    rows: dict[str, list] = {c: [] for c in ("kind", "shape", "latency_ms", "p10_ms", "p90_ms", "repeats", "inner",
                                             "flushed", "kernel_source", "wall_s", "phase", "error")}
    if path.is_file():  # keep the rows of kinds not measured in this run
        try:
            old = pq.read_table(path).to_pydict()
            for i, k in enumerate(old.get("kind", [])):
                if k not in kinds_run:
                    for c, col in rows.items():
                        col.append(old[c][i] if c in old else None)
        except Exception:
            pass
    for r in sorted(results, key=lambda r: r.point):
        rows["kind"].append(r.point.kind)
        rows["shape"].append(json.dumps(r.point.to_dict(), sort_keys=True))
        rows["latency_ms"].append(_ms(r.latency_s))
        rows["p10_ms"].append(_ms(r.p10_s))
        rows["p90_ms"].append(_ms(r.p90_s))
        rows["repeats"].append(int(r.repeats))
        rows["inner"].append(int(r.inner))
        rows["flushed"].append(bool(r.flushed))
        rows["kernel_source"].append(r.source)
        rows["wall_s"].append(float(r.wall_s) if r.wall_s is not None else float("nan"))
        rows["phase"].append(r.phase)
        rows["error"].append(r.error)
    types = {"kind": "str", "shape": "str", "latency_ms": "float", "p10_ms": "float", "p90_ms": "float",
             "repeats": "int", "inner": "int", "flushed": "bool", "kernel_source": "str", "wall_s": "float",
             "phase": "str", "error": "str"}
    _write_table(path, {c: (types[c], v) for c, v in rows.items()})


def _write_metadata(path: Path, meta: dict[str, Any]) -> None:
    if path.is_file():  # keep what earlier runs into this directory measured
        try:
            old = json.loads(path.read_text())
            prev = old.pop("previous_runs", [])
            if set(old.get("kinds", [])) - set(meta.get("kinds", [])):
                meta["previous_runs"] = [*prev, old]
        except Exception:
            pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)
