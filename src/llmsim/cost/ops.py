"""Decompose one forward iteration of a transformer into operators with FLOPs and bytes.

An iteration processes a `Batch`: prefill chunks (new tokens on top of tokens already
cached) and decode tokens (one new token each, at its own context length), as
continuous-batching engines do. `build_ops` returns the operators one GPU executes for
that batch, layer group by layer group, each with:

- `flops`: multiply-adds x 2 for one execution,
- `bytes`: HBM bytes read + written for one execution (for collectives: the message
  size per GPU),
- `count`: how many times it runs in the iteration (number of layers in its group),
- the shape a measured kernel table needs.

Formulas (per GPU; T = tokens this GPU's attention rank processes, h = hidden size,
tp-local head counts nh, nkv, head dim d):

    GEMM (m, n, k):   flops = 2 m n k,   bytes = m k a + n k w + m n o
    prefill attention, chunk of q new tokens after p cached:
        pairs = sum_{i=1..q} min(window, p + i)   (causal)
        flops = 2 nh pairs (d_qk + d_v)
        bytes = Q + O + K,V of the p+q context (read once, FlashAttention-style) + K,V written
    decode attention, context c:  flops = 2 nh c (d_qk + d_v),  bytes = c * kv_bytes_per_token
    Gated DeltaNet (linear attention; tp-local value heads nv, key heads nk, head dims dk, dv,
    chunk C = GDN_CHUNK_TOKENS of the chunked prefill kernels, state element bytes s = 4):
        prefill, T tokens in S sequences and K chunks:
            flops = 2 T nv (C (3 dk + 2 dv) + 3 dk dv)     (intra-chunk products + state in/out)
            bytes = T (2 nk dk + 2 nv dv + 2 nv) a + 2 K nv dk dv a + 2 S nv dk dv s
                    (q, k, v, o, gates; per-chunk states written and read; each sequence's
                    state read and written once)
        decode, n tokens:  flops = 2 n nv 3.5 dk dv,  bytes = n (2 nv dk dv s + (2 nk dk + 2 nv dv + 2 nv) a)
        (the fixed-size state is read and written once per token, whatever the context)
    DeepSeek Sparse Attention (MLA layers; index heads ni of width di, top-k k, index-key
    cache bytes per token b = di fp8 + one fp32 scale per 128): the attention pairs above count
    min(k, context) keys per query, as a window of k would; the indexer scores every
    (query, cached key) pair, P = the causal pairs without a window, on every tp rank:
        flops = 2 ni di P,  bytes = context x b + queries x (ni di + 4 k) + 2 x 4 P
        (index keys read, fp8 queries read, top-k indices written; fp32 scores written, then
        read by the top-k kernel)
    MoE experts (E experts, top-k, T tokens of all attention ranks meeting in the layer, ep-way
    expert parallelism, each expert's GEMM n x k_ per GPU):
        routed pairs r = f T k / ep,  active experts A = expected_active_experts(E, k, T) / ep
        flops = 2 r n k_,  bytes = A n k_ w + r (k_ a + n o)    (only active experts' weights stream)
    f is the expert-parallel load imbalance: the busiest GPU's share of the routed pairs over
    the mean share (1 = balanced, the default; `expected_ep_imbalance` derives it from the
    routing skew). With attention DP the dispatch / combine all-to-alls carry f x the mean
    volume too: they end when the busiest GPU has received its tokens.

where a, w, o are bytes per element of activations, weights and outputs.

Norms: each layer runs an input RMSNorm, a post-attention RMSNorm and the residual add as kernels
of their own, except where the engine fuses the tensor-parallel all-reduce with the residual add
and RMSNorm after it (`fused_norm_tokens`, from `Backend.fused_norm_tokens`): up to that many
tokens per attention rank, the two norms are part of the all-reduces before them and add no
operator (their bytes are a few hidden-state rows; the launch is what they cost at decode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..dtypes import bytes_per_element, gemm_compute_dtype
from ..errors import LlmsimError
from ..layout import Parallel, Precision
from ..models.spec import LayerGroup, ModelSpec

ACT_BYTES = 2.0  # bf16 activations between kernels (residual stream, norms, outputs)
GDN_CHUNK_TOKENS = 64  # tokens per chunk of the chunked Gated DeltaNet prefill kernels (flash-linear-attention's chunk size)
GDN_STATE_BYTES = 4.0  # the recurrent state is kept and updated in fp32 (SGLang's default mamba_ssm_dtype; memory counts it too)
GDN_PREFILL_KERNELS = 6  # launches of the chunked forward (cumsum, K K^T, triangular solve, w / u, states, output)
DSA_INDEXER_KERNELS = 2  # launches of the sparse-attention indexer: the scores (fp8 MQA logits) and the top-k selection


@dataclass(slots=True)
class Op:
    name: str
    kind: str  # gemm | moe_gemm | attn_prefill | attn_decode | linear_attn | sparse_index | memory | comm
    count: int
    flops: float
    bytes: float
    dtype: str = "bf16"
    shape: tuple = ()
    layer_group: str = ""
    weight_only_quant: str = ""  # int8/int4 weights dequantised to bf16 inside the GEMM (no measured table)
    fused_quant: bool = False  # its low-precision input is quantised inside the previous kernel, in every engine
    separate_quant: bool = False  # its input comes from a kernel that cannot quantise it (a bf16 BMM): a pass of its own in every engine


@dataclass
class Batch:
    """One engine iteration: prefill chunks as (new_tokens, cached_tokens), decode tokens as context lengths.

    A decode token's context length counts every token it attends to, itself included.

    `decode_q`: query tokens per decode sequence. 1, or k + 1 where speculative decoding verifies
    k draft tokens in the same pass (`serving.specdecode`): every one of them goes through the
    GEMMs and the LM head, and attends to the sequence's context, whose KV is read once for all of
    them (the engines pack a sequence's q query tokens like q times the query heads on its KV).
    """

    prefill: list[tuple[int, int]] = field(default_factory=list)
    decode_ctx: list[int] = field(default_factory=list)
    decode_q: int = 1

    @property
    def num_prefill_tokens(self) -> int:
        return sum(q for q, _ in self.prefill)

    @property
    def num_decode_tokens(self) -> int:
        return len(self.decode_ctx) * self.decode_q

    @property
    def num_tokens(self) -> int:
        return self.num_prefill_tokens + self.num_decode_tokens

    @property
    def num_logit_rows(self) -> int:
        """Rows of the LM head: the last prefill token of each chunk plus every decode token."""
        return len(self.prefill) + self.num_decode_tokens


def _pairs(q: int, p: int, window: int) -> float:
    """Causal query-key pairs for q new tokens after p cached tokens, optional sliding window."""
    if not window or p + q <= window:
        return q * p + q * (q + 1) / 2
    # tokens i=1..q see min(window, p+i) keys
    full_until = max(0, min(q, window - p))  # i <= window - p see p + i keys
    s = full_until * p + full_until * (full_until + 1) / 2
    return s + (q - full_until) * window


def prefill_attention_cost(pairs, q_tokens, ctx_tokens, nh, nkv, d_qk, d_v, kv_token_bytes):
    """(flops, bytes) of causal prefill attention; arguments may be numpy arrays.

    Reads Q and the dequantised K,V of the whole context once, writes O and the new K,V."""
    flops = 2.0 * nh * pairs * (d_qk + d_v)
    nbytes = q_tokens * nh * (d_qk + d_v) * ACT_BYTES + ctx_tokens * nkv * (d_qk + d_v) * ACT_BYTES + q_tokens * kv_token_bytes
    return flops, nbytes


def decode_attention_cost(n_tokens, ctx_sum, nh, d_qk, d_v, kv_token_bytes):
    """(flops, bytes) of decode attention: every token reads its whole KV context once."""
    flops = 2.0 * nh * ctx_sum * (d_qk + d_v)
    nbytes = ctx_sum * kv_token_bytes + n_tokens * nh * (d_qk + d_v) * ACT_BYTES
    return flops, nbytes


def gemm_bytes(m, n, k, w_bytes, a_bytes):
    """HBM bytes of a GEMM: read A (m x k) and W (n x k), write C (m x n) in bf16.

    With fp8 activations the bf16 input is first quantised (read 2 bytes, write 1 per
    element), which engines run as a separate pass before the GEMM."""
    quant = m * k * (ACT_BYTES + a_bytes) if a_bytes < ACT_BYTES else 0.0
    return m * k * a_bytes + n * k * w_bytes + m * n * ACT_BYTES + quant


def gemm(name: str, m: float, n: float, k: float, w_bytes: float, a_bytes: float, dtype: str, count: int, grp: str) -> Op:
    m_i = max(1, int(math.ceil(m)))
    return Op(name, "gemm", count, 2.0 * m_i * n * k, gemm_bytes(m_i, n, k, w_bytes, a_bytes), dtype, (m_i, int(n), int(k)), grp)


def elementwise(name: str, nbytes: float, flops: float, count: int, grp: str) -> Op:
    return Op(name, "memory", count, flops, nbytes, "bf16", (), grp)


def comm(name: str, collective: str, nbytes: float, group: int, count: int, grp: str) -> Op:
    return Op(name, "comm", count, 0.0, nbytes, "bf16", (collective, group), grp)


# How unevenly a router spreads tokens over its experts (`expected_active_experts`). Real routers
# favour some experts, so a batch of T tokens touches fewer distinct experts -- and a
# weight-bound decode step streams fewer expert weights -- than uniform routing gives. llmsim
# ranks a layer's experts by popularity, p_i proportional to i^-s (Zipf, s this exponent;
# s = 0 is uniform routing). At s = 0.5 the most popular of 128 experts takes 6.0x the mean
# share of picks and the least popular 0.53x (of 384 experts: 10.2x and 0.52x). FITTED
# 2026-11-23 on the shared silicon serving rows' train half (benchmarks/validate_serving.py,
# the frozen seed-0 split of (model, system, layout) in benchmarks/split_train_configs.json):
# the measured TPOT of MoE models rose with concurrency more slowly than uniform routing
# predicted (predicted / measured 1.0-1.1 at c = 4 rising to 1.3-1.5 at c = 32-128 for
# gpt-oss-120b, MiniMax-M2.5, Kimi-K2.5 and Qwen3-235B, in TRT-LLM and vLLM alike). Criterion
# (mean of TTFT and TPOT median APE over the train rows) at s = 0 / 0.3 / 0.5 / 0.7 / 1.0:
# 11.95 / 11.86 / 11.78 / 11.81 / 12.26 -> 0.5. Held-out rows (not used to choose): 15.56 /
# 15.61 / 15.46 / 15.16 / 15.36. The models disagree: gpt-oss-120b's TPOT wants more skew (still
# 1.15x its measurement at 0.5) while DeepSeek-V3 / R1 fall under with more; one exponent for
# every model is the compromise, since no router statistics are measured here.
ROUTING_ZIPF_EXPONENT = 0.5
_PICK_PROBABILITIES: dict[tuple[int, int, float], np.ndarray] = {}


def expected_active_experts(num_experts: int, k: int, tokens: float, zipf: float | None = None) -> float:
    """Expected number of a layer's experts that receive at least one of `tokens` tokens' top-k
    picks. Expert i (popularity rank, 1-based) is picked by a token with probability
    q_i = min(1, k p_i), p_i = i^-zipf / sum_j j^-zipf; tokens route independently:

        active = sum_i 1 - (1 - q_i)^tokens        (zipf = 0: E (1 - (1 - k/E)^tokens))

    Under expert parallelism each GPU holds E/ep experts whatever their rank, so its expected
    count is this x 1/ep; the imbalance between GPUs (the one holding the most popular experts
    sets the step) is `expected_ep_imbalance`'s, applied where a deployment asks for it
    (`OpBuilder(ep_imbalance=...)`). zipf: None is `ROUTING_ZIPF_EXPONENT`."""
    E = num_experts
    if zipf is None:
        zipf = ROUTING_ZIPF_EXPONENT
    if zipf == 0.0:
        return E * (1.0 - (1.0 - k / E) ** tokens)
    key = (E, k, zipf)
    q = _PICK_PROBABILITIES.get(key)
    if q is None:
        w = np.arange(1, E + 1, dtype=float) ** -zipf
        q = _PICK_PROBABILITIES[key] = np.minimum(1.0, k * w / w.sum())
    return float(np.sum(1.0 - (1.0 - q) ** tokens))


_EP_IMBALANCE: dict[tuple[int, int, float], float] = {}
EP_IMBALANCE_PLACEMENTS = 512  # random expert placements averaged over (seeded: deterministic)


def expected_ep_imbalance(num_experts: int, ep: int, zipf: float | None = None) -> float:
    """Expert-parallel load imbalance under skewed routing: the expected share of routed tokens
    on the busiest of `ep` GPUs, over the mean share 1/ep.

    Expert popularity follows the routing skew of `expected_active_experts` (p_i proportional to
    i^-zipf). Each GPU holds E/ep experts; where the popular experts land is arbitrary, so the
    popularity ranks are placed at random (EP_IMBALANCE_PLACEMENTS placements, seed 0) and

        f = mean over placements of  ep x max_g sum_{i on GPU g} p_i

    This is the large-batch limit (token counts per GPU follow their shares); at small batches
    a decode step is weight-bound and the imbalance matters little. Examples at zipf 0.5: 256
    experts over 8 GPUs 1.24, over 32 GPUs 1.93; 128 over 4 1.15; 8 over 8 (one expert per GPU:
    8 x the top expert's share 1 / sum i^-0.5 = 0.229) 1.83. zipf 0 (uniform routing): 1.
    Redundant experts / EPLB rebalancing (SGLang's --ep-num-redundant-experts, TRT-LLM's
    load balancer) bring a deployment towards 1; this is the figure without them."""
    E, ep = int(num_experts), int(ep)
    if ep <= 1 or E < ep:  # E == ep: one expert per GPU, the busiest holds the most popular one
        return 1.0
    if zipf is None:
        zipf = ROUTING_ZIPF_EXPONENT
    key = (E, ep, float(zipf))
    f = _EP_IMBALANCE.get(key)
    if f is None:
        w = np.arange(1, E + 1, dtype=float) ** -float(zipf)
        p = w / w.sum()
        rng = np.random.default_rng(0)
        per_gpu = E // ep
        shares = np.empty(EP_IMBALANCE_PLACEMENTS)
        for j in range(EP_IMBALANCE_PLACEMENTS):
            placed = p[rng.permutation(E)][: per_gpu * ep].reshape(ep, per_gpu).sum(axis=1)
            shares[j] = placed.max() / placed.sum() * ep
        f = _EP_IMBALANCE[key] = float(shares.mean())
    return f


def check_ep_imbalance(v: float | str | None) -> None:
    """A requested expert-parallel load imbalance: None (balanced), 'auto', or a finite number >= 1.
    Anything else (bools, other strings, NaN, < 1) is a clear error."""
    if v is None or (isinstance(v, str) and v == "auto"):
        return
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not (math.isfinite(v) and v >= 1.0):
        raise LlmsimError(f"ep_imbalance must be 'auto' or a number >= 1, got {v!r}",
                          hint="the busiest expert-parallel GPU's share of routed tokens over the mean share: 1 = balanced "
                               "(default), e.g. 1.2; 'auto' derives it from the routing skew")


def resolve_ep_imbalance(v: float | str | None, num_experts: int, ep: int) -> float:
    """The factor `OpBuilder(ep_imbalance=...)` takes for a request `v` (checked by
    `check_ep_imbalance`): 1.0 for a dense model or when none is asked for, `expected_ep_imbalance`
    for 'auto', else the number. (The op builder itself ignores it where ep = 1.)"""
    check_ep_imbalance(v)
    if v is None or not num_experts:
        return 1.0
    if isinstance(v, str):  # 'auto', the only string check_ep_imbalance lets through
        return expected_ep_imbalance(num_experts, ep)
    if ep > 1 and v > ep:  # the busiest GPU holds at most all the routed tokens: ep x the mean share
        raise LlmsimError(f"ep_imbalance = {v} is more than ep = {ep} allows: the busiest expert-parallel GPU's share "
                          f"of the routed tokens is at most all of them, {ep}x the mean share",
                          hint=f"use a number in [1, {ep}], or 'auto'")
    return float(v)


class OpBuilder:
    """Builds the per-GPU operator list for (model, layout, precision). Reused across batches."""

    def __init__(self, model: ModelSpec, par: Parallel, prec: Precision, fused_norm_tokens: int = 0,
                 ep_imbalance: float = 1.0):
        self.m, self.par, self.prec = model, par, prec
        # the busiest expert-parallel GPU's share of the routed tokens over the mean share
        # (`expected_ep_imbalance`); 1 = balanced. Only MoE layers with ep > 1 feel it.
        self.ep_imbalance = float(ep_imbalance) if par.ep > 1 else 1.0
        # up to this many tokens per attention rank, the tensor-parallel all-reduces carry the
        # residual add + RMSNorm after them (the engine's fused all-reduce kernel), so the layer's
        # input_norm and post_attn_norm cost nothing of their own (`Backend.fused_norm_tokens`)
        self.fused_norm_tokens = fused_norm_tokens if par.tp > 1 and par.dp == 1 else 0
        self.w_bytes = bytes_per_element(prec.weight)
        self.a_bytes = bytes_per_element(prec.act)
        self.kv_bytes = bytes_per_element(prec.kv)
        self.gemm_dtype = gemm_compute_dtype(prec.weight, prec.act)
        if self.gemm_dtype == "fp8" and model.block_scaled(prec.weight):
            # the published checkpoint's 128x128-block fp8 (DeepSeek style): block-scaled GEMMs
            # after a per-token-group (1 x 128) activation quantisation kernel
            self.gemm_dtype = "fp8_block"
        # weight-only quantisation: weights stored narrower than the format the GEMM computes in
        self.woq = prec.weight if bytes_per_element(prec.weight) < bytes_per_element(self.gemm_dtype) else ""
        self.nh = model.num_heads // par.tp
        self.nkv = par.kv_heads_per_gpu(model)
        self.lin_nk = model.linear_num_key_heads // par.tp  # Gated DeltaNet heads are split over tp
        self.lin_nv = model.linear_num_value_heads // par.tp

    def _g(self, name: str, m: float, n: float, k: float, count: int, tag: str) -> Op:
        """A GEMM on the model's (quantised) weights."""
        op = gemm(name, m, n, k, self.w_bytes, self.a_bytes, self.gemm_dtype, count, tag)
        op.weight_only_quant = self.woq
        return op

    def _gp(self, part: str, name: str, m: float, n: float, k: float, count: int, tag: str) -> Op:
        """A GEMM of one model part ('attention', 'shared_experts', 'dense_mlp'): bf16 where the
        served checkpoint leaves that part unquantised (`ModelSpec.bf16_part`: gpt-oss's
        attention, Kimi-K2.5 INT4's attention / shared expert / dense MLP, NVIDIA's NVFP4
        DeepSeek-R1's q / kv projections), else as `_g`."""
        if self.m.bf16_part(part, self.prec.weight):
            return gemm(name, m, n, k, 2.0, 2.0, "bf16", count, tag)
        return self._g(name, m, n, k, count, tag)

    def _ga(self, name: str, m: float, n: float, k: float, count: int, tag: str) -> Op:
        """An attention projection: 'attention_out' for o_proj, 'attention_qkv' for the others."""
        return self._gp("attention_out" if name == "o_proj" else "attention_qkv", name, m, n, k, count, tag)

    # ------------------------------------------------------------ attention
    def attention_ops(self, batch: Batch, grp: LayerGroup, dp_share: float) -> list[Op]:
        m, nh = self.m, self.nh
        if grp.attention == "linear":
            return self._linear_core(batch, grp, dp_share)
        window = m.sliding_window if grp.attention == "sliding" else 0
        tag = f"{grp.attention}/{grp.mlp}"
        ops: list[Op] = []
        if m.is_mla:
            d_qk, d_v = m.q_head_dim, m.v_head_dim
            nkv, kv_tok_bytes = nh, (m.kv_lora_rank + m.qk_rope_head_dim) * self.kv_bytes
        else:
            d_qk = d_v = m.head_dim
            nkv, kv_tok_bytes = self.nkv, 2 * self.nkv * m.head_dim * self.kv_bytes
        # sparse attention: each query attends to the indexer's top-k cached tokens, as many (query,
        # key) pairs as a window of k gives -- though scattered over the whole context
        span = window or m.index_topk
        if m.is_sparse_attention:
            ops.append(self._indexer_scores(batch, grp, dp_share))
        if batch.prefill:
            pairs = sum(_pairs(q, p, span) for q, p in batch.prefill) * dp_share
            ctx = sum(min(p + q, window) if window else p + q for q, p in batch.prefill) * dp_share
            q_tok = batch.num_prefill_tokens * dp_share
            flops, nbytes = prefill_attention_cost(pairs, q_tok, ctx, nh, nkv, d_qk, d_v, kv_tok_bytes)
            # the KV-cache format picks the FMHA kernel (fp8 KV cache -> fp8 FMHA)
            shape: tuple = (tuple(batch.prefill), nh, nkv, d_qk, span, dp_share, self.prec.kv)
            ops.append(Op("attn_prefill", "attn_prefill", grp.count, flops, nbytes, self.prec.act, shape, tag))
        if batch.decode_ctx:
            n = len(batch.decode_ctx) * dp_share
            ctx_sum = (sum(min(c, span) for c in batch.decode_ctx) if span else sum(batch.decode_ctx)) * dp_share
            # a sequence's decode_q query tokens (speculative verification) read its KV once: as
            # decode_q times the query heads on the same KV heads
            qh = nh * batch.decode_q
            if m.is_mla:  # absorbed MLA: attend over the shared latent (MQA-like, one cache read per token)
                lat = m.kv_lora_rank + m.qk_rope_head_dim
                flops = 2.0 * qh * ctx_sum * (lat + m.kv_lora_rank)
                nbytes = ctx_sum * lat * self.kv_bytes + n * qh * (lat + m.kv_lora_rank) * ACT_BYTES
                shape = (n, ctx_sum / max(n, 1e-9), qh, 1, lat, window)
            else:
                flops, nbytes = decode_attention_cost(n, ctx_sum, qh, d_qk, d_v, kv_tok_bytes)
                shape = (n, ctx_sum / max(n, 1e-9), qh, nkv, d_qk, window)
            ops.append(Op("attn_decode", "attn_decode", grp.count, flops, nbytes, self.prec.kv, shape, tag))
        return ops

    def _indexer_scores(self, batch: Batch, grp: LayerGroup, dp_share: float) -> Op:
        """The lightning indexer's scores and top-k selection (formulas in the module docstring): every
        query scores every cached token of its sequence with all index heads (replicated on each tp
        rank), the fp32 scores are written and read back by the top-k kernel."""
        m = self.m
        nih, ihd, k = m.index_n_heads, m.index_head_dim, m.index_topk
        key_bytes = m.index_cache_bytes_per_token_per_layer
        decode_keys = sum(batch.decode_ctx) * batch.decode_q  # a decode token's pairs are its context
        pairs = sum(_pairs(q, p, 0) for q, p in batch.prefill) + decode_keys
        ctx = sum(p + q for q, p in batch.prefill) + decode_keys
        queries = batch.num_tokens
        flops = 2.0 * nih * ihd * pairs * dp_share
        nbytes = (ctx * key_bytes + queries * (nih * ihd + 4 * k) + 2 * 4 * pairs) * dp_share
        return Op("dsa_indexer", "sparse_index", grp.count, flops, nbytes, "fp8", (DSA_INDEXER_KERNELS,), f"{grp.attention}/{grp.mlp}")

    def _indexer_proj(self, T: float, c: int, tag: str) -> list[Op]:
        """The indexer's projections for T tokens, every index head on every tp rank (its weights
        are replicated, not split): index queries from the query latent (wq_b), one shared index
        key (wk), its LayerNorm, RoPE and fp8 quantisation with the store into the index cache, and
        the per-head weights (weights_proj, kept in bf16 by the published checkpoints)."""
        m = self.m
        h, nih, ihd = m.hidden_size, m.index_n_heads, m.index_head_dim
        return [
            self._ga("dsa_index_q_proj", T, nih * ihd, m.q_lora_rank or h, c, tag),
            self._ga("dsa_index_k_proj", T, ihd, h, c, tag),
            gemm("dsa_index_weights_proj", T, nih, h, 2.0, 2.0, "bf16", c, tag),
            elementwise("dsa_index_prep", T * ((nih + 1) * ihd * (2 * ACT_BYTES + 1) + m.index_cache_bytes_per_token_per_layer),
                        10 * T * (nih + 1) * ihd, c, tag),
        ]

    def _linear_core(self, batch: Batch, grp: LayerGroup, dp_share: float) -> list[Op]:
        """The Gated DeltaNet recurrence of a linear-attention layer (formulas in the module docstring)."""
        m, nk, nv = self.m, self.lin_nk, self.lin_nv
        dk, dv, C = m.linear_key_head_dim, m.linear_value_head_dim, GDN_CHUNK_TOKENS
        tag = f"{grp.attention}/{grp.mlp}"
        io = (2 * nk * dk + 2 * nv * dv + 2 * nv) * ACT_BYTES  # q, k, v in, o out, decay and beta, per token
        state = nv * dk * dv
        ops: list[Op] = []
        if batch.prefill:
            T = batch.num_prefill_tokens * dp_share
            seqs = len(batch.prefill) * dp_share
            chunks = sum(-(-q // C) for q, _ in batch.prefill) * dp_share
            flops = 2.0 * T * nv * (C * (3 * dk + 2 * dv) + 3 * dk * dv)
            nbytes = T * io + 2.0 * chunks * state * ACT_BYTES + 2.0 * seqs * state * GDN_STATE_BYTES
            ops.append(Op("gdn_prefill", "linear_attn", grp.count, flops, nbytes, "bf16", (GDN_PREFILL_KERNELS,), tag))
        if batch.decode_ctx:
            n = len(batch.decode_ctx) * dp_share
            q = batch.decode_q  # speculative verification: q steps of the recurrence, each state kept for roll-back
            flops = 7.0 * n * q * state
            nbytes = n * ((1 + q) * state * GDN_STATE_BYTES + q * io)
            ops.append(Op("gdn_decode", "linear_attn", grp.count, flops, nbytes, "bf16", (1,), tag))
        return ops

    def _linear_layer(self, batch: Batch, grp: LayerGroup, T: float, dp_share: float) -> list[Op]:
        """A Gated DeltaNet layer's token mixer: in_proj_qkvz (q, k, v and the output gate z) and
        in_proj_ba, the causal depthwise conv over q, k, v, the decay / beta gating, the
        recurrence, the gated RMSNorm and out_proj."""
        m, c, tag = self.m, grp.count, f"{grp.attention}/{grp.mlp}"
        h, nk, nv = m.hidden_size, self.lin_nk, self.lin_nv
        dk, dv = m.linear_key_head_dim, m.linear_value_head_dim
        conv = 2 * nk * dk + nv * dv
        K = m.linear_conv_kernel_dim
        ops = [
            self._ga("gdn_in_proj_qkvz", T, conv + nv * dv, h, c, tag),
            self._ga("gdn_in_proj_ba", T, 2 * nv, h, c, tag),
            elementwise("gdn_conv", 2 * T * conv * ACT_BYTES, 2 * K * T * conv, c, tag),
            elementwise("gdn_gating", T * 2 * nv * (ACT_BYTES + 4), 10 * T * nv, c, tag),
        ]
        ops += self.attention_ops(batch, grp, dp_share)
        ops.append(elementwise("gdn_norm_gate", 3 * T * nv * dv * ACT_BYTES, 8 * T * nv * dv, c, tag))
        ops.append(self._gp("attention_out", "gdn_out_proj", T, h, nv * dv, c, tag))
        return ops

    # ------------------------------------------------------------ one layer group
    def layer_ops(self, batch: Batch, grp: LayerGroup) -> list[Op]:
        m, par = self.m, self.par
        h, c, tag = m.hidden_size, grp.count, f"{grp.attention}/{grp.mlp}"
        dp_share = 1.0 / par.dp
        T = batch.num_tokens * dp_share  # tokens on this GPU's attention rank
        nh = self.nh
        fused_norms = T <= self.fused_norm_tokens  # the norms ride in the all-reduces before them
        ops: list[Op] = [] if fused_norms else [elementwise("input_norm", 2 * T * h * ACT_BYTES, 4 * T * h, c, tag)]

        if grp.attention == "linear":
            ops += self._linear_layer(batch, grp, T, dp_share)
        elif m.is_mla:
            ql = m.q_lora_rank
            lat = m.kv_lora_rank + m.qk_rope_head_dim
            # fused down-projections (q_a, kv_a), replicated on every tp rank
            ops.append(self._ga("qkv_a_proj", T, (ql or 0) + lat, h, c, tag))
            if ql:
                ops.append(self._ga("q_b_proj", T, nh * m.q_head_dim, ql, c, tag))
            else:
                ops.append(self._ga("q_proj", T, nh * m.q_head_dim, h, c, tag))
            if m.is_sparse_attention:
                ops += self._indexer_proj(T, c, tag)
            if batch.prefill:  # decompress the latent cache of the prefilled context to full K, V
                ctx = sum(p + q for q, p in batch.prefill) * dp_share
                ops.append(self._ga("kv_b_proj", ctx, nh * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank, c, tag))
            if batch.decode_ctx:  # weight absorption: q_nope -> latent, latent -> v, per head
                # batched per-head GEMMs on the absorbed W_UK / W_UV, which the engines split out
                # of kv_b_proj at load time and keep in the activation dtype (bf16): no
                # quantised weights, no activation-quantisation pass
                nd = batch.num_decode_tokens * dp_share
                ops.append(gemm("mla_q_absorb", nd * nh, m.kv_lora_rank, m.qk_nope_head_dim, 2.0, 2.0, "bf16", c, tag))
                ops.append(gemm("mla_v_absorb", nd * nh, m.v_head_dim, m.kv_lora_rank, 2.0, 2.0, "bf16", c, tag))
            ops.append(elementwise("rope", 2 * T * (nh * m.qk_rope_head_dim + m.qk_rope_head_dim) * ACT_BYTES, 0, c, tag))
            ops += self.attention_ops(batch, grp, dp_share)
            o_proj = self._ga("o_proj", T, h, nh * m.v_head_dim, c, tag)
            # MLA's o_proj reads the bf16 output of the v-absorb BMM (decode) / of the bf16 buffer
            # the context and generation parts share, so no engine can fold its activation
            # quantisation into the attention kernel as TRT-LLM does for ordinary attention
            # (`Attention._use_quantize_output`); TRT-LLM's MLA.forward_absorption_generation ends
            # in a bf16 bmm_out, and o_proj's NVFP4 / fp8 Linear then quantises its input itself
            o_proj.separate_quant = True
            ops.append(o_proj)
        else:
            d = m.head_dim
            gate = nh * d if m.attn_output_gate else 0  # q_proj also produces the output gate
            ops.append(self._ga("qkv_proj", T, (nh + 2 * self.nkv) * d + gate, h, c, tag))
            ops.append(elementwise("rope", 2 * T * (nh + self.nkv) * d * ACT_BYTES, 0, c, tag))
            ops += self.attention_ops(batch, grp, dp_share)
            if gate:  # o = attention output x sigmoid(gate)
                ops.append(elementwise("attn_output_gate", 3 * T * gate * ACT_BYTES, 5 * T * gate, c, tag))
            ops.append(self._ga("o_proj", T, h, nh * d, c, tag))
        if par.tp > 1:
            ops.append(comm("attn_allreduce", "all_reduce", T * h * ACT_BYTES, par.tp, c, tag))
        if not fused_norms:
            ops.append(elementwise("post_attn_norm", 3 * T * h * ACT_BYTES, 4 * T * h, c, tag))

        if grp.mlp == "dense":
            ops += self._mlp("mlp", T, m.intermediate_size // par.tp, c, tag)
            if par.tp > 1:
                ops.append(comm("mlp_allreduce", "all_reduce", T * h * ACT_BYTES, par.tp, c, tag))
        else:
            ops += self._moe(batch, T, c, tag)
        ops.append(elementwise("residual_add", 3 * T * h * ACT_BYTES, T * h, c, tag))
        return ops

    def _mlp(self, name: str, T: float, width: int, c: int, tag: str, part: str = "dense_mlp") -> list[Op]:
        h = self.m.hidden_size
        up = 2 * width if self.m.gated_mlp else width
        return [
            self._gp(part, f"{name}_up", T, up, h, c, tag),
            elementwise(f"{name}_act", T * (up + width) * ACT_BYTES, 4 * T * width, c, tag),
            self._gp(part, f"{name}_down", T, h, width, c, tag),
        ]

    def _moe(self, batch: Batch, T: float, c: int, tag: str) -> list[Op]:
        m, par = self.m, self.par
        h, wb, ab, gd = m.hidden_size, self.w_bytes, self.a_bytes, self.gemm_dtype
        E, k = m.num_experts, m.experts_per_token
        ops = [gemm("moe_router", T, E, h, 2.0, 2.0, "bf16", c, tag)]
        # fp4 experts run in a fused MoE kernel (TRT-LLM-gen / FlashInfer / CUTLASS) that routes,
        # permutes and sums the k expert outputs itself and quantises the intermediate activation
        # in its SwiGLU epilogue; the Triton / CUTLASS fp8 and bf16 paths launch those steps as
        # kernels of their own (top-k, sort by expert, weighted sum, quantisation passes)
        fused_moe = self.prec.weight == "fp4"
        if not fused_moe:  # top-k selection over the router logits (fp32 scores in, expert ids + weights out)
            ops.append(elementwise("moe_topk", T * E * 4 + T * k * 8, T * E * 4, c, tag))
        T_all = batch.num_tokens  # tokens of every attention rank meet in the MoE layer
        # All-to-all dispatch / combine only where attention ranks hold different tokens
        # (attention DP). With dp = 1 every GPU of the stage already holds every token after the
        # attention all-reduce: each computes its local experts' share and the partial sums meet
        # in `moe_allreduce` (TRT-LLM, vLLM and SGLang use their all-to-all paths only with
        # attention DP).
        a2a = par.ep > 1 and par.dp > 1
        # with tp > 1 inside each attention-DP rank, the rank's tp GPUs hold the same tokens and
        # each dispatches a 1/tp slice (sequence-parallel MoE: vLLM's use_sequence_parallel_moe,
        # SGLang's scattered DeepEP mode), so no token crosses the network twice
        T_a2a = T / par.tp
        imb = self.ep_imbalance  # the busiest GPU sets the step
        if a2a:
            ops.append(comm("moe_dispatch", "alltoall", T_a2a * k * h * ab * imb, par.gpus_per_stage, c, tag))
        width = m.moe_intermediate_size // par.moe_tp
        up = 2 * width if m.gated_mlp else width
        local_experts = E // par.ep
        routed = T_all * k / par.ep * imb  # token-expert pairs landing on the busiest GPU (mean share x imbalance)
        # expected number of local experts that receive at least one token: the model's expected
        # distinct experts under skewed routing (`expected_active_experts`), this GPU's share
        active = local_experts / E * expected_active_experts(E, k, max(T_all, 0))
        m_per_expert = routed / max(active, 1e-9)
        # sort the token-expert pairs by expert (vLLM / SGLang's align kernel writes the order and
        # the grouped GEMM gathers rows itself; TRT-LLM's permute also copies them)
        if not fused_moe:
            ops.append(elementwise("moe_sort", routed * 16, 0, c, tag))
        for name, n_, k_ in (("moe_experts_up", up, h), ("moe_experts_down", h, width)):
            flops = 2.0 * routed * n_ * k_
            nbytes = active * n_ * k_ * wb + routed * (k_ * ab + n_ * ACT_BYTES)
            op = Op(name, "moe_gemm", c, flops, nbytes, gd, (m_per_expert, n_, k_, active), tag)
            # in the fused fp4 kernel only the MoE input is quantised by a separate pass
            op.fused_quant = fused_moe and name == "moe_experts_down"
            ops.append(op)
        ops.append(elementwise("moe_act", routed * (up + width) * ACT_BYTES, 4 * routed * width, c, tag))
        # each token's k expert outputs, weighted and summed (vLLM's moe_sum, TRT-LLM's finalize)
        if not fused_moe:
            ops.append(elementwise("moe_finalize", routed * h * ACT_BYTES + T * h * ACT_BYTES, 2 * routed * h, c, tag))
        if a2a:
            ops.append(comm("moe_combine", "alltoall", T_a2a * k * h * ACT_BYTES * imb, par.gpus_per_stage, c, tag))
        if m.num_shared_experts:
            sw = m.num_shared_experts * (m.shared_expert_intermediate_size or m.moe_intermediate_size) // par.tp
            ops += self._mlp("shared_expert", T, sw, c, tag, part="shared_experts")
        if par.moe_tp > 1 or par.tp > 1:
            ops.append(comm("moe_allreduce", "all_reduce", T * h * ACT_BYTES, par.tp, c, tag))
        return ops

    # ------------------------------------------------------------ whole iteration
    def build(self, batch: Batch) -> list[Op]:
        """All operators of one iteration through every pipeline stage (its latency path)."""
        m, par = self.m, self.par
        h = m.hidden_size
        T = batch.num_tokens / par.dp
        ops: list[Op] = [elementwise("embedding", T * h * ACT_BYTES * 2, 0, 1, "embed")]
        for grp in m.layer_groups:
            ops += self.layer_ops(batch, grp)
        if par.pp > 1:
            ops.append(comm("pp_send_recv", "send_recv", T * h * ACT_BYTES, 2, par.pp - 1, "pipeline"))
        rows = batch.num_logit_rows / par.dp
        ops.append(elementwise("final_norm", 2 * rows * h * ACT_BYTES, 4 * rows * h, 1, "head"))
        ops.append(gemm("lm_head", rows, m.vocab_size / par.tp, h, 2.0, 2.0, "bf16", 1, "head"))
        if par.tp > 1:
            ops.append(comm("logits_allgather", "all_gather", rows * m.vocab_size / par.tp * 4, par.tp, 1, "head"))
        return ops


def build_ops(model: ModelSpec, par: Parallel, prec: Precision, batch: Batch, fused_norm_tokens: int = 0,
              ep_imbalance: float = 1.0) -> list[Op]:
    return OpBuilder(model, par, prec, fused_norm_tokens, ep_imbalance).build(batch)


def uniform_batch(prefill_lens: Sequence[int] = (), decode_ctx: Sequence[int] = ()) -> Batch:
    return Batch([(int(q), 0) for q in prefill_lens], [int(c) for c in decode_ctx])
