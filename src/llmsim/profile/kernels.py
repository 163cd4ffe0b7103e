"""The kernels that `llmsim profile` times, written with PyTorch (imported lazily).

Each builder allocates the tensors of one shape (`Point`) and returns a closure that
launches the kernel once, plus the name of the implementation (the tables'
``kernel_source``):

* GEMM: ``torch.mm(a, w.t())`` (cuBLAS) in bf16 -- a Linear layer, weight stored (n, k);
  fp8: ``torch._scaled_mm`` with per-tensor scales, bf16 output (cuBLASLt; Ada, Hopper,
  Blackwell, compute capability >= 8.9).
* prefill attention: FlashAttention (``flash_attn_func``) if importable, else
  ``F.scaled_dot_product_attention(is_causal=True)``, GQA with ``enable_gqa`` (or K/V
  repeated before timing where that is not supported).
* decode attention: one new token per sequence over a contiguous KV cache:
  ``flash_attn_with_kvcache`` if importable, else SDPA with the query heads of each KV
  head folded into the query length (q: batch x kv_heads x group x d) -- the usual
  "pack GQA" decode, which reads each KV head once as paged decode kernels do.
* elementwise: RMSNorm (``F.rms_norm``) and a copy (``Tensor.copy_``).
* collectives: ``torch.distributed`` all_reduce / all_gather / reduce_scatter / all_to_all
  on a process group (NCCL on GPUs), bf16 buffers; message_bytes is the full per-rank
  buffer (the all_gather output, the reduce_scatter input).

The same code runs on a CPU (tiny shapes in the tests), just slowly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from ..errors import LlmsimError
from .plan import Point

__all__ = ["KernelFactory", "fp8_supported", "resolve_device", "torch_version_info"]


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised via run_profile
        raise LlmsimError("llmsim profile needs PyTorch with a CUDA GPU",
                          hint="pip install 'llmsim[profile]' on a GPU machine; or --dry-run to see the plan") from e
    return torch


def resolve_device(device: Any = None):
    """A torch.device: None -> the current CUDA device; an int -> cuda:N; strings as torch reads them."""
    torch = _torch()
    if device is None:
        return torch.device("cuda", torch.cuda.current_device())
    if isinstance(device, int):
        return torch.device("cuda", device)
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return d


def fp8_supported(device) -> bool:
    """Whether per-tensor scaled fp8 GEMMs (torch._scaled_mm) run here: NVIDIA compute capability >= 8.9."""
    torch = _torch()
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return False
    if device.type == "cpu":
        return True
    if device.type != "cuda" or getattr(torch.version, "hip", None):
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def _flash_attn():
    try:
        import flash_attn  # noqa: F401
        from flash_attn import flash_attn_func, flash_attn_with_kvcache
    except Exception:
        return None
    return flash_attn_func, flash_attn_with_kvcache


def torch_version_info() -> dict[str, Any]:
    """Versions of torch, CUDA, cuDNN, NCCL and FlashAttention (what is there)."""
    torch = _torch()
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "hip": getattr(torch.version, "hip", None)}
    try:
        info["cudnn"] = torch.backends.cudnn.version()
    except Exception:
        info["cudnn"] = None
    try:
        v = torch.cuda.nccl.version()
        info["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
    except Exception:
        info["nccl"] = None
    try:
        import flash_attn

        info["flash_attn"] = flash_attn.__version__
    except Exception:
        info["flash_attn"] = None
    return info


class KernelFactory:
    """Builds the timed closure of each shape on one device.

    `seed` makes the input data reproducible (each shape gets its own generator seeded
    from the seed and the shape). `use_flash_attn`: None = if importable.
    """

    def __init__(self, device: Any = None, seed: int = 0, use_flash_attn: bool | None = None,
                 l2_bytes: int | None = None):
        torch = _torch()
        self.torch = torch
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.fp8 = fp8_supported(self.device)
        fa = _flash_attn() if use_flash_attn in (None, True) and self.device.type == "cuda" else None
        if use_flash_attn and fa is None:
            raise LlmsimError("flash_attn is not importable here", hint="pip install flash-attn, or leave it to SDPA")
        self.flash = fa
        self._gqa_ok: bool | None = None
        if l2_bytes is None:
            l2_bytes = 0
            if self.device.type == "cuda":
                l2_bytes = int(getattr(torch.cuda.get_device_properties(self.device), "L2_cache_size", 0) or 0)
            l2_bytes = l2_bytes or (64 << 20 if self.device.type == "cuda" else 8 << 20)
        self.l2_bytes = int(l2_bytes)
        self._flush_buf: Any = None  # a torch tensor (L2 flush buffer), made on first use
        self.groups: dict[int, Any] = {}  # num_gpus -> process group (collectives)

    # ---------------------------------------------------------------- helpers
    def _gen(self, p: Point):
        h = hashlib.sha256(f"{self.seed}|{p}".encode()).digest()
        g = self.torch.Generator(device=self.device)
        g.manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))
        return g

    def _randn(self, shape, gen, dtype=None):
        t = self.torch
        return t.randn(*shape, generator=gen, device=self.device, dtype=dtype or t.bfloat16)

    def flush(self) -> None:
        """Evict the L2 cache: write a buffer twice its size."""
        if self._flush_buf is None:
            self._flush_buf = self.torch.empty(2 * self.l2_bytes // 4, dtype=self.torch.int32, device=self.device)
        self._flush_buf.zero_()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def empty_cache(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

    # ---------------------------------------------------------------- builders
    def build(self, p: Point) -> tuple[Callable[[], Any], str]:
        """(closure launching the kernel once, kernel_source) for shape `p`."""
        fn = {"gemm": self._gemm, "context_attention": self._context, "generation_attention": self._generation,
              "elementwise": self._elementwise, "collective": self._collective}.get(p.kind)
        if fn is None:
            raise LlmsimError(f"unknown kernel kind {p.kind!r}")
        return fn(p)

    def _gemm(self, p: Point):
        t = self.torch
        (dt,) = p.series
        m, n, k = p.coords
        g = self._gen(p)
        if dt == "bf16":
            a = self._randn((m, k), g)
            w = self._randn((n, k), g)
            out = t.empty(m, n, device=self.device, dtype=t.bfloat16)
            wt = w.t()
            return (lambda: t.mm(a, wt, out=out)), "torch_cublas" if self.device.type == "cuda" else "torch_cpu"
        if dt == "fp8":
            if not self.fp8:
                raise LlmsimError("this device has no fp8 GEMM (needs compute capability >= 8.9)")
            a = self._randn((m, k), g).to(t.float8_e4m3fn)
            w = self._randn((n, k), g).to(t.float8_e4m3fn)
            sa = t.tensor(1.0, device=self.device, dtype=t.float32)
            sb = t.tensor(1.0, device=self.device, dtype=t.float32)
            wt = w.t()  # (k, n) column-major, as _scaled_mm wants
            return (lambda: t._scaled_mm(a, wt, scale_a=sa, scale_b=sb, out_dtype=t.bfloat16)), "torch_scaled_mm"
        raise LlmsimError(f"no GEMM kernel for dtype {dt!r}", hint="bf16 or fp8")

    def _sdpa_gqa_supported(self) -> bool:
        if self._gqa_ok is None:
            t = self.torch
            try:
                q = t.zeros(1, 2, 4, 16, device=self.device, dtype=t.bfloat16)
                kv = t.zeros(1, 1, 4, 16, device=self.device, dtype=t.bfloat16)
                t.nn.functional.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
                self._gqa_ok = True
            except (TypeError, RuntimeError):
                self._gqa_ok = False
        return self._gqa_ok

    def _context(self, p: Point):
        t = self.torch
        h, kvh, d = p.series
        b, s = p.coords
        g = self._gen(p)
        if self.flash is not None:
            fa, _ = self.flash
            q, k, v = self._randn((b, s, h, d), g), self._randn((b, s, kvh, d), g), self._randn((b, s, kvh, d), g)
            return (lambda: fa(q, k, v, causal=True)), "flash_attn"
        q, k, v = self._randn((b, h, s, d), g), self._randn((b, kvh, s, d), g), self._randn((b, kvh, s, d), g)
        sdpa = t.nn.functional.scaled_dot_product_attention
        if h == kvh:
            return (lambda: sdpa(q, k, v, is_causal=True)), "torch_sdpa"
        if self._sdpa_gqa_supported():
            return (lambda: sdpa(q, k, v, is_causal=True, enable_gqa=True)), "torch_sdpa"
        rep = h // kvh
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        return (lambda: sdpa(q, k, v, is_causal=True)), "torch_sdpa_repeat_kv"

    def _generation(self, p: Point):
        t = self.torch
        h, kvh, d = p.series
        b, L = p.coords
        g = self._gen(p)
        if h % kvh:
            raise LlmsimError(f"num_heads {h} is not a multiple of num_kv_heads {kvh}")
        if self.flash is not None:
            _, fkv = self.flash
            q = self._randn((b, 1, h, d), g)
            kc, vc = self._randn((b, L, kvh, d), g), self._randn((b, L, kvh, d), g)
            lens = t.full((b,), L, dtype=t.int32, device=self.device)
            return (lambda: fkv(q, kc, vc, cache_seqlens=lens)), "flash_attn_kvcache"
        grp = h // kvh
        q = self._randn((b, kvh, grp, d), g)  # the group's query heads as a short query sequence
        kc, vc = self._randn((b, kvh, L, d), g), self._randn((b, kvh, L, d), g)
        sdpa = t.nn.functional.scaled_dot_product_attention
        return (lambda: sdpa(q, kc, vc)), "torch_sdpa_decode"

    def _elementwise(self, p: Point):
        t = self.torch
        (op,) = p.series
        n, hd = p.coords
        g = self._gen(p)
        x = self._randn((n, hd), g)
        if op == "copy":
            y = t.empty_like(x)
            return (lambda: y.copy_(x)), "torch_copy"
        if op == "rmsnorm":
            w = self._randn((hd,), g)
            F = t.nn.functional
            if hasattr(F, "rms_norm"):
                return (lambda: F.rms_norm(x, (hd,), w, 1e-6)), "torch_rms_norm"

            def rms():  # older torch: the unfused composite
                return x * t.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype) * w

            return rms, "torch_rms_norm_composite"
        raise LlmsimError(f"unknown elementwise op {op!r}", hint="rmsnorm or copy")

    def _collective(self, p: Point):
        t = self.torch
        import torch.distributed as dist

        (op,) = p.series
        ng, nbytes = p.coords
        group = self.groups.get(ng)
        if group is None:
            raise LlmsimError(f"no process group of {ng} GPUs", hint="launch with torchrun --nproc-per-node N")
        n = max(ng, int(nbytes) // 2)  # bf16 elements
        n -= n % ng
        x = t.ones(n, dtype=t.bfloat16, device=self.device)
        if op == "all_reduce":
            return (lambda: dist.all_reduce(x, group=group)), "NCCL"
        if op == "all_gather":
            part = t.ones(n // ng, dtype=t.bfloat16, device=self.device)
            f = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
            return (lambda: f(x, part, group=group)), "NCCL"
        if op == "reduce_scatter":
            part = t.empty(n // ng, dtype=t.bfloat16, device=self.device)
            f = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
            return (lambda: f(part, x, group=group)), "NCCL"
        if op == "alltoall":
            y = t.empty_like(x)
            return (lambda: dist.all_to_all_single(y, x, group=group)), "NCCL"
        raise LlmsimError(f"unknown collective {op!r}", hint="all_reduce, all_gather, reduce_scatter or alltoall")

