"""Numeric formats: how many bytes an element takes and which tensor-core rate it runs at.

Weights, activations and the KV cache each have a format. The format decides
(1) the bytes moved per element and (2) which peak FLOP/s of the chip a GEMM
can use. A GEMM runs at the rate of the *wider* of its two operand formats
unless the chip has a native mixed kernel: weight-only int4/int8 GEMMs
dequantise to the activation format (W4A16 runs at the bf16 rate but moves
a quarter of the weight bytes).
"""

from __future__ import annotations

from .errors import LlmsimError

# bytes per element (int4/fp4 pack two per byte; block scales are added separately)
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
}

# Aliases people type, and the names found in HF configs / kernel tables.
_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "fp8_e4m3": "fp8",
    "e4m3": "fp8",
    "fp8_block": "fp8",
    "float8": "fp8",
    "w8": "int8",
    "w4": "int4",
    "nvfp4": "fp4",
    "mxfp4": "fp4",
}

WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4", "fp4")
ACT_DTYPES = ("bf16", "fp16", "fp8")
KV_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4")

# Block-scale overhead: fp4 (NVFP4: one fp8 scale per 16 values), int4 (GPTQ/AWQ: one
# fp16 scale + zero per 128 values) — extra bytes per element.
SCALE_OVERHEAD_BYTES: dict[str, float] = {"fp4": 1.0 / 16, "int4": 4.0 / 128}


def canonical(dtype: str) -> str:
    """Return the canonical short name of a dtype ('bfloat16' -> 'bf16')."""
    d = str(dtype).strip().lower()
    d = _ALIASES.get(d, d)
    if d not in BYTES_PER_ELEMENT:
        raise LlmsimError(
            f"unknown dtype {dtype!r}",
            hint=f"use one of {', '.join(sorted(BYTES_PER_ELEMENT))}",
        )
    return d


def bytes_per_element(dtype: str) -> float:
    d = canonical(dtype)
    return BYTES_PER_ELEMENT[d] + SCALE_OVERHEAD_BYTES.get(d, 0.0)


def check_allowed(dtype: str, allowed: tuple[str, ...], what: str) -> str:
    try:
        d = canonical(dtype)
    except LlmsimError:
        raise LlmsimError(f"unknown dtype {dtype!r} for the {what}", hint=f"use one of {', '.join(allowed)}") from None
    if d not in allowed:
        raise LlmsimError(f"{what} dtype {dtype!r} is not supported", hint=f"use one of {', '.join(allowed)}")
    return d


def gemm_compute_dtype(weight_dtype: str, act_dtype: str) -> str:
    """The tensor-core format a GEMM with these operands runs at.

    fp8 x fp8 runs at the fp8 rate; fp4 weights with fp8/fp4 activations use the fp4
    rate on chips that have it (resolved against the chip by the cost model);
    weight-only quantisation (int8/int4 weights, bf16 activations) dequantises
    and runs at the activation rate.
    """
    w, a = canonical(weight_dtype), canonical(act_dtype)
    if w == "fp4" and a in ("fp8", "fp4"):
        return "fp4"
    if w in ("fp8", "fp4") and a == "fp8":
        return "fp8"
    if w == "int8" and a == "fp8":
        return "int8"
    return "bf16" if a in ("bf16", "fp16") else a
