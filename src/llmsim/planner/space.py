"""The planner's search space: GPU types, precisions, engines, layouts and engine knobs.

A *family* is everything that fixes an engine's iteration time: (GPU type, layout tp/pp/dp/ep,
weight/KV precision, serving engine). A *candidate* adds the engine knobs that change its
scheduling but not its step-time model — max batched tokens and chunked prefill — and a role:

- ``agg``: an aggregated replica (prefill and decode on the same engine);
- ``prefill`` / ``decode``: a worker of a disaggregated deployment (Dynamo / DistServe style),
  each pool with its own GPU type and layout.

The batch limit (max_num_seqs) is not enumerated here: `evaluate.py` searches it per candidate
(the largest concurrency meeting the SLOs), and replica / worker counts follow from the
objective (`plan.py`).

Layouts per GPU type (every rule that removes one is reported with its reason):
- tp: powers of two up to the NVLink domain (8 on HGX; up to 64 on NVL72), dividing the
  attention heads and dividing or being a multiple of the KV heads (`llmsim.layout`);
- pp: powers of two up to 8 (not more than the layers); kept only where it can help (see
  `prune.py`: pipeline stages never raise tokens/s per GPU at equal batch, so pp > 1 is tried
  only when pp = 1 does not fit or is KV-cache-limited);
- attention-DP and EP: MoE models only (on a dense model attention-DP is the same as replicas,
  which the planner counts separately): per stage size N, (tp=N, ep=1), (tp=N, ep=N) and
  (tp=t, dp=N/t, ep=N) for t < N.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

from ..errors import LlmsimError
from ..hardware.catalog import get_gpu, list_gpus
from ..hardware.spec import GPUSpec
from ..layout import Parallel, Precision
from ..models.spec import ModelSpec
from ..serving.backends import BACKENDS, get_backend

ENGINES = tuple(BACKENDS)  # vllm, sglang, trtllm
DEFAULT_MAX_PER_TYPE = 8

# ----------------------------------------------------------------------------- parsing


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)?\s*$")


def parse_duration_ms(value, what: str = "latency target") -> float:
    """'300ms' -> 300, '0.3s' -> 300, '300' -> 300 (a bare number is milliseconds), '250us' -> 0.25."""
    hint = "a positive number with an optional unit us, ms (the default) or s, e.g. 300ms, 0.3s or 300"
    if isinstance(value, bool):
        raise LlmsimError(f"{what} must be a duration such as 300ms or 0.3s, got {value!r}", hint=hint)
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise LlmsimError(f"{what} must be a duration such as 300ms, 0.3s or 300 (ms), got {value!r}", hint=hint)
        v = float(m.group(1))
        unit = (m.group(2) or "ms").lower()
        v *= {"ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}[unit]
    if not (math.isfinite(v) and v > 0):
        raise LlmsimError(f"{what} must be a positive duration, got {value!r}", hint=hint)
    return v


@dataclass(frozen=True)
class GpuOption:
    """A GPU type the planner may use: at most `max_count` of them at `price_per_hour_usd` each."""

    name: str
    max_count: int
    price_per_hour_usd: float
    tdp_w: float = 0.0

    @property
    def spec(self) -> GPUSpec:
        return _gpu_spec(self.name, self.price_per_hour_usd)

    def to_dict(self) -> dict:
        return {"gpu": self.name, "max_count": self.max_count, "price_per_hour_usd": self.price_per_hour_usd, "tdp_w": self.tdp_w}


@lru_cache(maxsize=64)
def _gpu_spec(name: str, price: float) -> GPUSpec:
    # one object per (type, price): the step-time cache keys on it
    return get_gpu(name, price_per_hour_usd=price)


_GPU_FORM = "TYPE[:MAX_COUNT][@USD_PER_GPU_HOUR]"
_GPU_HINT = "write --gpus as " + _GPU_FORM + " entries separated by commas, e.g. h100-sxm:8 or h200-sxm:32,h100-sxm:64@2.5"
_GPU_FILE_SUFFIXES = (".yaml", ".yml", ".json")


MAX_PRICE_PER_GPU_HOUR_USD = 1e6  # far above any rental price; beyond it a deployment's $/h overflows the cost sums


def parse_gpus(gpus, max_gpus: int | None = None) -> list[GpuOption]:
    """`'h200-sxm:32,h100-sxm:64'` (type:max count, optionally `@price` $/GPU-hour, e.g.
    `h100-sxm:16@2.1`) or a list of such strings; None means every catalog GPU. A type without
    a count gets `max_gpus` (default 8). Every malformed entry is an LlmsimError quoting it."""
    if gpus is None or (isinstance(gpus, str) and not gpus.strip()):
        items = [g.name for g in list_gpus()]
    elif isinstance(gpus, str):
        items = [s for s in (x.strip() for x in gpus.split(",")) if s]
    elif isinstance(gpus, (list, tuple)) and all(isinstance(s, str) for s in gpus):
        items = [s.strip() for s in gpus]
    else:
        raise LlmsimError(f"gpus must be a {_GPU_FORM} string or a list of such strings, got {gpus!r}", hint=_GPU_HINT)
    default_count = max_gpus if max_gpus is not None else DEFAULT_MAX_PER_TYPE
    out: list[GpuOption] = []
    seen = set()
    for raw in items:
        item, price = raw, None
        if "@" in item:
            item, p = item.rsplit("@", 1)
            try:
                price = float(p)
            except ValueError:
                raise LlmsimError(f"GPU price {p.strip()!r} in --gpus entry {raw!r} must be a number of $/GPU-hour",
                                  hint=f"put the $/GPU-hour after '@', e.g. h100-sxm:8@2.5 ({_GPU_FORM})") from None
            if not (math.isfinite(price) and 0 <= price <= MAX_PRICE_PER_GPU_HOUR_USD):
                raise LlmsimError(f"GPU price {p.strip()!r} in --gpus entry {raw!r} must be a number of $/GPU-hour in "
                                  f"[0, {MAX_PRICE_PER_GPU_HOUR_USD:,.0f}]",
                                  hint=f"put the $/GPU-hour after '@', e.g. h100-sxm:8@2.5 ({_GPU_FORM})")
        item = item.strip()
        count = default_count
        if ":" in item and not item.lower().endswith(_GPU_FILE_SUFFIXES):
            item, c = item.rsplit(":", 1)
            item, c = item.strip(), c.strip()
            if ":" in item and not item.lower().endswith(_GPU_FILE_SUFFIXES):
                raise LlmsimError(f"cannot read --gpus entry {raw!r}: expected {_GPU_FORM} (one ':' before the count)", hint=_GPU_HINT)
            if not re.fullmatch(r"\d+", c) or int(c) < 1:
                raise LlmsimError(f"GPU count {c!r} in --gpus entry {raw!r} must be a whole number >= 1 (the most GPUs of that type to use)",
                                  hint=_GPU_HINT)
            count = int(c)
        if not item:
            raise LlmsimError(f"no GPU type in --gpus entry {raw!r}", hint=_GPU_HINT + " (`llmsim gpus list` names the types)")
        spec = get_gpu(item, price_per_hour_usd=price)
        if max_gpus is not None:
            count = min(count, max_gpus)
        name = item if item.lower().endswith(_GPU_FILE_SUFFIXES) else spec.name
        if name in seen:
            raise LlmsimError(f"GPU type {name} given twice in --gpus", hint="give each GPU type once, with its largest count")
        seen.add(name)
        out.append(GpuOption(name, count, float(spec.price_per_hour_usd), float(spec.tdp_w)))
    if not out:
        raise LlmsimError("no GPU types to plan for", hint="e.g. --gpus h200-sxm:32")
    return out


@dataclass(frozen=True)
class PrecisionOption:
    """Weight and KV-cache formats (activations follow the weights as `Precision.make` says)."""

    weight: str
    kv: str

    @property
    def label(self) -> str:
        return self.weight if self.kv == self.weight or (self.weight == "fp4" and self.kv == "fp8") else f"{self.weight}/kv-{self.kv}"

    def precision(self) -> Precision:
        return Precision.make(self.weight, None, self.kv)


def _items(name: str, value, hint: str) -> list[str]:
    """The non-empty items of a comma-separated string or a list / tuple of strings."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or not all(isinstance(x, str) for x in parts):
        raise LlmsimError(f"{name} must be a comma-separated string or a list of strings, got {value!r}", hint=hint)
    return [x.strip() for x in parts if x.strip()]


def parse_precisions(value) -> list[PrecisionOption]:
    """'bf16,fp8' — each item WEIGHT or WEIGHT/KV: 'bf16' (bf16 weights and KV), 'fp8' (W8A8 and
    an fp8 KV cache), 'fp8/bf16' (fp8 weights, bf16 KV), 'fp4' (NVFP4 weights, fp8 KV; Blackwell)."""
    if value is None:
        value = "bf16,fp8"
    items = [s.lower() for s in _items("precisions", value, "e.g. precisions='bf16,fp8' or ['bf16', 'fp8/bf16']")]
    out: list[PrecisionOption] = []
    for it in items:
        w, _, kv = it.replace(":", "/").partition("/")
        kv = kv.removeprefix("kv-").removeprefix("kv")
        if not kv:
            kv = "fp8" if w in ("fp8", "fp4") else ("bf16" if w in ("bf16", "fp16", "int8", "int4") else w)
        try:
            p = PrecisionOption(w, kv)
            p.precision()
        except LlmsimError as e:
            raise LlmsimError(f"precision {it!r}: {e.message}", hint="e.g. --precision bf16,fp8 or fp8/bf16 (weights/KV)") from None
        p = PrecisionOption(p.precision().weight, p.precision().kv)
        if p not in out:
            out.append(p)
    if not out:
        raise LlmsimError("no precision to plan for", hint="e.g. --precision bf16,fp8")
    return out


def parse_engines(value) -> list[str]:
    """'vllm' | 'sglang' | 'trtllm' | 'all' | a comma-separated list."""
    if value is None:
        return ["vllm"]
    items = _items("engines", value, "e.g. engines='vllm,sglang' or ['vllm', 'trtllm'], or 'all'")
    if any(s.lower() == "all" for s in items):
        return list(ENGINES)
    out = []
    for s in items:
        b = get_backend(s).name
        if b not in out:
            out.append(b)
    if not out:
        raise LlmsimError(f"no serving engine to plan for, got {value!r}", hint=f"e.g. --backend-engine vllm; one or more of {', '.join(ENGINES)}, or all")
    return out


# ----------------------------------------------------------------------------- families / candidates


@dataclass(frozen=True)
class Family:
    """What fixes an engine's step time: GPU type, layout, precision, engine."""

    gpu: GpuOption
    par: Parallel
    prec: PrecisionOption
    engine: str

    @property
    def num_gpus(self) -> int:
        return self.par.num_gpus

    @property
    def label(self) -> str:
        p = self.par
        lay = f"tp{p.tp}" + (f" pp{p.pp}" if p.pp > 1 else "") + (f" dp{p.dp}" if p.dp > 1 else "") + (f" ep{p.ep}" if p.ep > 1 else "")
        return f"{self.gpu.name} {lay} {self.prec.label} {self.engine}"

    def layout_dict(self) -> dict:
        p = self.par
        return {"gpu": self.gpu.name, "tp": p.tp, "pp": p.pp, "dp": p.dp, "ep": p.ep, "gpus_per_worker": p.num_gpus,
                "weight_dtype": self.prec.weight, "kv_dtype": self.prec.kv, "engine": self.engine}


@dataclass(frozen=True)
class Candidate:
    """A family with engine knobs, in a role: 'agg', 'prefill' or 'decode'."""

    role: str
    family: Family
    max_num_batched_tokens: int
    chunked_prefill: bool

    @property
    def mixed_batches(self) -> bool | None:
        """How the candidate is simulated and launched: chunked, with decodes in the prefill
        iterations whatever the engine's default (launch.py adds SGLang's --enable-mixed-chunk);
        unchunked, by the engine's own rule (None: vLLM V1 / TRT-LLM mix whole prompts with
        decodes, SGLang runs prefill batches alone)."""
        return True if self.chunked_prefill else None

    @property
    def label(self) -> str:
        k = f"mbt {self.max_num_batched_tokens}" if self.chunked_prefill else "no chunking"
        return f"{self.role} {self.family.label} ({k})" if self.role != "decode" else f"decode {self.family.label}"

    def knobs_dict(self) -> dict:
        return {"max_num_batched_tokens": self.max_num_batched_tokens, "chunked_prefill": self.chunked_prefill}


@dataclass
class Rejection:
    """A configuration family removed before or during the search, and why."""

    what: str
    reason: str
    stage: str  # 'layout' | 'precision' | 'memory' | 'latency' | 'rule' | 'simulation' | 'budget'
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"configuration": self.what, "reason": self.reason, "stage": self.stage, **({"detail": self.detail} if self.detail else {})}


def _pow2_upto(n: int) -> list[int]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    return out


def tp_limit(gpu: GPUSpec) -> int:
    """Largest TP degree tried: the NVLink domain (at least 8 GPUs of a PCIe node), at most 64."""
    return min(64, max(gpu.nvlink_domain_size, min(8, gpu.gpus_per_node)))


def enumerate_layouts(model: ModelSpec, gpu: GpuOption, max_pp: int = 8) -> tuple[list[Parallel], list[Rejection]]:
    """Valid layouts of `model` on up to `gpu.max_count` GPUs of this type, and the rejected ones
    with the rule that removed them."""
    spec = gpu.spec
    tps = _pow2_upto(min(tp_limit(spec), gpu.max_count))
    pps = [p for p in _pow2_upto(min(max_pp, gpu.max_count, model.num_layers))]
    shapes: list[Parallel] = []
    if model.is_moe:
        for n in _pow2_upto(gpu.max_count):
            for tp in tps:
                if tp > n:
                    continue
                dp = n // tp
                eps = [1, n] if dp == 1 else [n]
                for ep in dict.fromkeys(eps):
                    shapes.append(Parallel(tp, 1, dp, ep))
    else:
        shapes = [Parallel(tp, 1, 1, 1) for tp in tps]
    ok: list[Parallel] = []
    bad: list[Rejection] = []
    for base in shapes:
        for pp in pps:
            par = Parallel(base.tp, pp, base.dp, base.ep)
            if par.num_gpus > gpu.max_count:
                continue
            try:
                par.validate(model)
            except LlmsimError as e:
                if pp == 1:
                    bad.append(Rejection(f"{gpu.name} {_lay(par)}", e.message, "layout"))
                continue
            ok.append(par)
    too_big = [t for t in _pow2_upto(min(64, gpu.max_count)) if t > tp_limit(spec)]
    if too_big:
        bad.append(Rejection(f"{gpu.name} tp{too_big[0]}+", f"tensor parallelism beyond the {tp_limit(spec)}-GPU NVLink domain of {spec.name} "
                             "would run every all-reduce over the scale-out network; larger replicas use pp (or ep for MoE)", "rule"))
    if not model.is_moe and gpu.max_count > 1:
        bad.append(Rejection(f"{gpu.name} attention-DP / EP", f"{model.name} is dense: attention data parallelism is the same as replicas "
                             "(counted separately) and there are no experts to shard", "rule"))
    return ok, bad


def _lay(par: Parallel) -> str:
    s = f"tp{par.tp}"
    if par.pp > 1:
        s += f" pp{par.pp}"
    if par.dp > 1:
        s += f" dp{par.dp}"
    if par.ep > 1:
        s += f" ep{par.ep}"
    return s


def precision_supported(gpu: GPUSpec, prec: PrecisionOption) -> str | None:
    """None if the GPU can run this precision, else why not."""
    from ..dtypes import gemm_compute_dtype

    p = prec.precision()
    if p.weight == "fp4" and not gpu.supports("fp4"):
        return f"{gpu.name} has no fp4 tensor cores (fp4 weights need Blackwell: b200, gb200, b300, gb300)"
    try:
        gpu.peak_flops_per_s(gemm_compute_dtype(p.weight, p.act))
    except LlmsimError as e:
        return e.message
    return None


# engine knob sets (max_num_batched_tokens, chunked prefill) tried per role; see prune.py for the
# rules that remove some of them
AGG_KNOBS: tuple[tuple[int, bool], ...] = ((1024, True), (2048, True), (4096, True), (8192, True), (16384, True), (8192, False))
PREFILL_KNOBS: tuple[tuple[int, bool], ...] = ((4096, True), (8192, True), (16384, True))
DECODE_KNOBS: tuple[tuple[int, bool], ...] = ((8192, True),)
