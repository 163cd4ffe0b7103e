"""Per-GPU memory of an inference deployment: weights, KV cache, activations, runtime overhead.

Budget, as the engines define their memory fraction (`fraction_of`):

    "capacity" (vLLM's `gpu_memory_utilization`, SGLang's `mem_fraction_static`):
        usable   = memory_fraction x capacity
        kv_space = usable - weights - activations - runtime_overhead
    "free" (TRT-LLM's `KvCacheConfig.free_gpu_memory_fraction`: a share of the memory still
    free once the weights are loaded and a warm-up forward has run):
        usable   = fixed + memory_fraction x (capacity - fixed), at most capacity
                   (fixed = weights + activations + runtime_overhead)
        kv_space = usable - fixed
    max KV tokens = kv_space / kv_bytes_per_token            (whole paged blocks)

The two differ most where the weights fill the GPU: DeepSeek-R1 fp8 on four B200s (156.8 GiB
of weights, 0.5 GiB of activations and 1 GiB of runtime per GPU of 179.1 GiB) keeps
0.9 x 179.1 - 158.3 = 2.8 GiB of KV cache under the first reading (85,920 tokens of 35,136
bytes) and 0.9 x (179.1 - 158.3) = 18.7 GiB under the second (569,808 tokens).

Weights are sharded as the layout says (see `llmsim.layout`): attention and dense MLPs
by tp, routed experts by ep (and moe_tp inside an expert), embeddings and LM head
vocab-parallel by tp, layers by pp (the stage with the embedding or the LM head is the
largest). Embeddings, LM head, norms and routers stay in bf16 when weights are quantised,
as serving engines keep them. The KV cache is split across tp by KV heads
(replicated when tp exceeds them); MLA's latent cache is not split by tp, nor is sparse
attention's index-key cache (fp8 keys + scales, whatever the KV format). Sliding-window
layers keep at most `window` tokens per sequence (`kv_pool`: how a paged engine counts them). Linear-attention (Gated DeltaNet) layers keep
no KV cache but a fixed state per sequence, split over tp by heads
(`linear_state_bytes_per_sequence`): it counts in a sequence's bytes and so in max concurrency.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..cost.ops import GDN_STATE_BYTES
from ..dtypes import bytes_per_element
from ..hardware.spec import GIB, GPUSpec
from ..checks import is_int, is_number
from ..errors import LlmsimError
from ..layout import Parallel, Precision
from ..models.spec import ModelSpec

BF16 = 2.0


@dataclass
class MemoryBreakdown:
    """Bytes per GPU. `fits` False carries the reason and what to change in `message`."""

    weights_bytes: float
    kv_cache_bytes: float  # KV cache the requested batch needs
    activation_bytes: float
    runtime_overhead_bytes: float
    total_bytes: float  # weights + kv_cache + activations + runtime overhead
    capacity_bytes: float
    usable_bytes: float  # memory_fraction x capacity
    kv_bytes_per_token: float  # one token of one sequence, all layers on this GPU (full-attention layers)
    max_kv_tokens: int
    max_concurrency: int  # sequences of the requested length that fit at once
    fits: bool
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def weights_bytes_per_gpu(model: ModelSpec, par: Parallel, prec: Precision) -> float:
    wb = bytes_per_element(prec.weight)
    m = model
    attn = m.attention_params() / par.tp
    attn_out = m.attention_out_params() / par.tp
    if not m.is_mla and par.tp > m.num_kv_heads:
        # K/V projections are replicated once tp exceeds the KV heads: each GPU holds whole KV heads
        kv_proj = 2 * m.hidden_size * m.num_kv_heads * m.head_dim + (2 * m.num_kv_heads * m.head_dim if m.qkv_bias else 0)
        attn += kv_proj * (par.kv_heads_per_gpu(m) / m.num_kv_heads - 1.0 / par.tp)
    if m.is_sparse_attention:  # the indexer's weights are replicated on every tp rank, not split
        attn += m.indexer_params() * (1.0 - 1.0 / par.tp)
    if m.num_linear_layers:  # hybrid: the mean attention layer, softmax and Gated DeltaNet layers weighed by count
        lin_out = m.linear_num_value_heads * m.linear_value_head_dim * m.hidden_size / par.tp
        lin = m.linear_attention_params() / par.tp
        attn = (m.num_kv_layers * attn + m.num_linear_layers * lin) / m.num_layers
        attn_out = (m.num_kv_layers * attn_out + m.num_linear_layers * lin_out) / m.num_layers
    per_layer_norms = 2 * m._norm_params(m.hidden_size)
    dense = m.dense_mlp_params() / par.tp
    moe = 0.0
    shared = 0.0
    router = 0.0
    if m.is_moe:
        moe = (m.num_experts / par.ep) * m.expert_params() / par.moe_tp
        shared = m.shared_expert_params() / par.tp
        router = m.router_params()
    layers_per_stage = math.ceil(m.num_layers / par.pp)
    # the densest stage: dense layers come first, so take the worst mix for this stage size
    n_moe = min(layers_per_stage, m.num_moe_layers)
    n_dense = layers_per_stage - n_moe
    quantised = n_moe * moe
    bf16 = layers_per_stage * per_layer_norms + n_moe * router
    # parts the served checkpoint leaves in bf16 (gpt-oss attention; Kimi-K2.5 INT4: all but the routed experts;
    # NVIDIA's NVFP4 DeepSeek-R1: the q / kv projections)
    for part, params in (("attention_qkv", layers_per_stage * (attn - attn_out)), ("attention_out", layers_per_stage * attn_out),
                         ("dense_mlp", n_dense * dense), ("shared_experts", n_moe * shared)):
        if m.bf16_part(part, prec.weight):
            bf16 += params
        else:
            quantised += params
    emb = m.embedding_params() / par.tp
    head = m.lm_head_params() / par.tp + m._norm_params(m.hidden_size)  # LM head + final norm (last stage)
    bf16 += (emb + head) if par.pp == 1 else max(emb, head)
    return quantised * wb + bf16 * BF16


def kv_bytes_per_token_per_gpu(model: ModelSpec, par: Parallel, prec: Precision, layers: float | None = None) -> float:
    """KV bytes one token adds on one GPU in `layers` layers with a KV cache (default: a full
    pipeline stage's, its linear-attention layers, which keep none, left out)."""
    if layers is None:
        layers = math.ceil(model.num_layers / par.pp) * model.num_kv_layers / model.num_layers
    kvb = bytes_per_element(prec.kv)
    if model.is_mla:
        per_layer = model.kv_cache_elements_per_token_per_layer
    else:
        per_layer = 2 * par.kv_heads_per_gpu(model) * model.head_dim
    return layers * (per_layer * kvb + model.index_cache_bytes_per_token_per_layer)


def _kv_layers(model: ModelSpec, par: Parallel, prec: Precision) -> tuple[float, float, float]:
    """(KV bytes one token adds in one layer on one GPU, full-attention layers, sliding-window
    layers) of a full pipeline stage."""
    stage_frac = math.ceil(model.num_layers / par.pp) / model.num_layers
    n_slide = model.num_sliding_layers * stage_frac
    return kv_bytes_per_token_per_gpu(model, par, prec, layers=1), model.num_kv_layers * stage_frac - n_slide, n_slide


def _window_tokens(model: ModelSpec, seq_len: int, block_size: int) -> int:
    """Tokens a sliding layer keeps of a `seq_len`-token sequence, in whole blocks."""
    return math.ceil(min(seq_len, model.sliding_window or seq_len) / block_size) * block_size


def kv_bytes_per_sequence(model: ModelSpec, par: Parallel, prec: Precision, seq_len: int, block_size: int = 16) -> float:
    """KV bytes of one sequence of `seq_len` tokens on one GPU, in whole blocks; sliding layers capped at the window."""
    per_layer_tok, n_full, n_slide = _kv_layers(model, par, prec)
    blocks = math.ceil(seq_len / block_size) * block_size
    return (per_layer_tok * (n_full * blocks + n_slide * _window_tokens(model, seq_len, block_size))
            + linear_state_bytes_per_sequence(model, par))


def linear_state_bytes_per_sequence(model: ModelSpec, par: Parallel) -> float:
    """Fixed state one sequence holds on one GPU in a pipeline stage's linear-attention layers,
    whatever its length: the recurrent state (value heads x key_dim x value_dim, split over tp
    by heads, `cost.ops.GDN_STATE_BYTES` each) and the conv state (conv channels x (kernel - 1), bf16)."""
    if not model.num_linear_layers:
        return 0.0
    layers = model.num_linear_layers * math.ceil(model.num_layers / par.pp) / model.num_layers
    state, conv = model.linear_state_elements_per_layer
    return layers * (state * GDN_STATE_BYTES + conv * BF16) / par.tp


@dataclass(frozen=True)
class KvPool:
    """A paged engine's KV pool on one engine (all its dp ranks, one pipeline stage), in the
    unit its block count grows by: `token_bytes` per token of a sequence's context and
    `state_tokens` (in those tokens) that a sequence holds whatever its length.

    A model that mixes full-attention and sliding-window layers grows by its full layers'
    bytes only: the sliding layers hold at most the window per sequence (vLLM's hybrid KV
    cache manager frees their blocks outside the window, TRT-LLM and SGLang keep separate
    window-sized pools), counted as fixed state of min(window, `held_tokens`) tokens, where
    `held_tokens` is the longest request. Otherwise a token costs every KV layer's bytes and
    the state is the linear-attention layers' (hybrid models), or none."""

    replica_tokens: int  # the replica's: a stage's tokens on every dp rank
    pp: int
    token_bytes: float  # per token, per GPU
    state_tokens: float  # per sequence, in tokens of token_bytes

    @property
    def capacity_tokens(self) -> int:
        """Per engine: with pp, per virtual engine (the replica's tokens // pp)."""
        return self.replica_tokens // self.pp


def kv_pool(model: ModelSpec, par: Parallel, prec: Precision, mem: MemoryBreakdown, held_tokens: int,
            block_size: int = 16) -> KvPool:
    """The KV pool `mem` leaves for one engine (per virtual engine with pp), see `KvPool`."""
    unit = kv_bytes_per_token_per_gpu(model, par, prec)
    state = linear_state_bytes_per_sequence(model, par)
    per_layer, n_full, n_slide = _kv_layers(model, par, prec)
    if n_slide and n_full and unit > 0:  # full and sliding layers: grows in the full ones
        unit = per_layer * n_full
        state += per_layer * n_slide * _window_tokens(model, held_tokens, block_size)
    kv_space = mem.usable_bytes - mem.weights_bytes - mem.activation_bytes - mem.runtime_overhead_bytes
    tokens = int(kv_space // unit) // block_size * block_size if unit > 0 and kv_space > 0 else 0
    return KvPool(tokens * par.dp, par.pp, unit, state / unit if unit > 0 else 0.0)


def activation_bytes_per_gpu(model: ModelSpec, par: Parallel, max_tokens: int, max_seqs: int) -> float:
    """Peak transient activations of the largest forward pass (max_tokens tokens, max_seqs logit rows)."""
    m = model
    h = m.hidden_size
    qkv = (m.num_heads // par.tp) * m.q_head_dim + 2 * par.kv_heads_per_gpu(m) * m.head_dim
    mlp = max(
        (3 * m.intermediate_size // par.tp) if m.num_dense_layers else 0,
        (3 * m.moe_intermediate_size * m.experts_per_token // par.moe_tp) if m.is_moe else 0,
    )
    per_token = (2 * h + max(qkv, mlp)) * BF16
    logits = max_seqs * m.vocab_size / par.tp * 4.0  # fp32 logits of the sampled rows
    return max_tokens / par.dp * per_token + logits


FRACTION_OF = ("capacity", "free")  # what an engine's memory fraction is a share of (module docstring)


def memory_breakdown(
    model: ModelSpec,
    gpu: GPUSpec,
    par: Parallel,
    prec: Precision,
    *,
    batch: int,
    seq_len: int,
    max_batched_tokens: int,
    memory_fraction: float = 0.9,
    block_size: int = 16,
    runtime_overhead_gib: float = 1.0,
    fraction_of: str = "capacity",
) -> MemoryBreakdown:
    """Per-GPU memory of one replica; `fraction_of` says what `memory_fraction` is a share of
    ('capacity' or 'free', see the module docstring)."""
    _check_breakdown_args(model, gpu, par, prec, batch, seq_len, max_batched_tokens, memory_fraction, block_size,
                          runtime_overhead_gib, fraction_of)
    capacity = gpu.memory_bytes
    w = weights_bytes_per_gpu(model, par, prec)
    act = activation_bytes_per_gpu(model, par, max_batched_tokens, batch)
    rt = runtime_overhead_gib * GIB
    if fraction_of == "free":  # never more than the GPU: a layout whose weights overflow it has no KV room
        fixed = w + act + rt
        usable = min(fixed + memory_fraction * (capacity - fixed), capacity)
    else:
        usable = memory_fraction * capacity
    per_seq = kv_bytes_per_sequence(model, par, prec, seq_len, block_size)
    seqs_per_gpu = math.ceil(batch / par.dp)
    kv = per_seq * seqs_per_gpu
    total = w + kv + act + rt
    kv_space = usable - w - act - rt
    per_tok = kv_bytes_per_token_per_gpu(model, par, prec)
    max_tokens = max(0, int(kv_space // per_tok) // block_size * block_size) if per_tok > 0 else 0
    max_conc = max(0, int(kv_space // per_seq)) * par.dp if kv_space > 0 else 0
    fits = total <= usable
    msg = "fits" if fits else _advice(model, gpu, par, prec, w, kv, act, rt, total, usable, max_conc, memory_fraction, fraction_of)
    return MemoryBreakdown(w, kv, act, rt, total, capacity, usable, per_tok, max_tokens, max_conc, fits, msg)


def _check_breakdown_args(model, gpu, par, prec, batch, seq_len, max_batched_tokens, memory_fraction, block_size,
                          runtime_overhead_gib, fraction_of) -> None:
    """memory_breakdown's arguments: the spec objects it reads, counts >= 1 (batch, seq_len, the
    token budget, block size), a memory fraction in (0, 1] and a finite runtime overhead >= 0 --
    a zero block or sequence length divided by zero, a negative batch gave negative KV bytes."""
    for name, v, cls, how in (("model", model, ModelSpec, "llmsim.get_model('llama-3.1-8b')"),
                              ("gpu", gpu, GPUSpec, "llmsim.get_gpu('h100')"),
                              ("par", par, Parallel, "Parallel(tp=2)"), ("prec", prec, Precision, "Precision.make('fp8')")):
        if not isinstance(v, cls):
            raise LlmsimError(f"memory_breakdown's {name} must be a {cls.__name__}, got {type(v).__name__} {v!r}",
                              hint=f"e.g. {how}; llmsim.estimate(...) takes names")
    par.validate(model)  # tp dividing the heads, ep the experts ...
    for name, v in (("batch", batch), ("seq_len", seq_len), ("max_batched_tokens", max_batched_tokens),
                    ("block_size", block_size)):
        if not is_int(v) or v < 1:
            raise LlmsimError(f"memory_breakdown's {name} must be an integer >= 1, got {v!r}")
    if not (is_number(memory_fraction) and 0 < memory_fraction <= 1):
        raise LlmsimError(f"memory_fraction must be a number in (0, 1], got {memory_fraction!r}", hint="e.g. 0.9")
    if not (is_number(runtime_overhead_gib) and math.isfinite(runtime_overhead_gib) and runtime_overhead_gib >= 0):
        raise LlmsimError(f"runtime_overhead_gib must be a finite number >= 0, got {runtime_overhead_gib!r}", hint="e.g. 1.0")
    if fraction_of not in FRACTION_OF:
        raise LlmsimError(f"fraction_of must be one of {', '.join(FRACTION_OF)}, got {fraction_of!r}")


def budget_text(fraction: float, fraction_of: str, capacity_bytes: float) -> str:
    """How the usable memory was derived, for messages: '90% of 79.6 GiB' or, for an engine whose
    fraction is of the free memory, 'weights, activations, runtime + 90% of the rest of 79.6 GiB'."""
    cap = f"{capacity_bytes / GIB:.1f} GiB"
    if fraction_of == "free":
        return f"weights, activations and runtime + {fraction:.0%} of the rest of {cap}"
    return f"{fraction:.0%} of {cap}"


def _advice(model, gpu, par, prec, w, kv, act, rt, total, usable, max_conc, fraction, fraction_of="capacity") -> str:
    gib = lambda b: f"{b / GIB:.1f} GiB"  # noqa: E731
    head = (
        f"does not fit: needs {gib(total)} per GPU (weights {gib(w)}, KV cache {gib(kv)}, "
        f"activations {gib(act)}, runtime {gib(rt)}), has {gib(usable)} usable "
        f"({budget_text(fraction, fraction_of, gpu.memory_bytes)})"
    )
    tips = []
    if act + rt >= usable:
        # no sharding of the weights helps: the activations and the runtime alone fill the budget
        tips.append(f"activations and runtime alone need {gib(act + rt)}; lower the batch or the tokens per "
                    f"iteration, shard them over more GPUs (tp), or raise the memory fraction")
    elif w + act + rt > usable:
        # smallest tensor/pipeline degree that leaves room for the weights
        need = (w * par.tp * par.pp) / (usable - act - rt)
        tp_min = 1 << max(0, math.ceil(math.log2(max(need, 1.0))))
        tips.append(f"try tp*pp ≥ {tp_min}")
        if prec.weight in ("bf16", "fp16") and gpu.supports("fp8"):
            tips.append("or fp8 weights (--weight-dtype fp8)")
        elif prec.weight in ("bf16", "fp16"):
            tips.append("or int8/int4 weights")
    else:
        tips.append(f"at most {max_conc} sequences of this length fit; lower the batch")
        if prec.kv in ("bf16", "fp16"):
            tips.append("or an fp8 KV cache (--kv-dtype fp8)")
        tips.append("or more GPUs (tp/pp)")
    return head + "; " + " ".join(tips)
