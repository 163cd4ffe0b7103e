"""FLOPs of training: per-GPU GEMM shapes of one layer, attention pairs, and the MFU convention.

Per micro-batch, one GPU of a (tp, cp, ep) layout multiplies ``T = micro_batch * seq_len / cp``
token rows (sequence parallelism all-gathers the sequence before each tensor-parallel GEMM, so
the GEMM sees all T rows; the weight is split by tp). A linear layer y = x W (x: T x k, W: k x n)
costs, per micro-batch:

    forward         2 T n k           GEMM (m, n, k) = (T, n, k)
    backward dgrad  2 T n k           GEMM (T, k, n)        dX = dY W^T
    backward wgrad  2 T n k           GEMM (n, k, T)        dW = dY^T X   (skipped for frozen weights)

so backward = 2x forward for every GEMM. Shapes per layer (h hidden, a heads, g KV heads, d head
dim, f MLP width, all divided by tp where Megatron splits them):

    QKV    (T, (a + 2g) d / tp, h)     [KV heads replicated when tp > g]
    O      (T, h, a d / tp)
    MLP    up (T, 2f/tp or f/tp, h), down (T, h, f/tp)
    MoE    router (T/tp, E, h) replicated; experts: E/ep local experts, each a GEMM of
           m_e = (T/tp) * top_k * ep / E rows (uniform routing), up (m_e, 2 f_e, h), down (m_e, h, f_e)
    MLA    q_a / kv_a down-projections replicated, q_b / kv_b / O split by tp
    LM head (T, V/tp, h) on the last pipeline stage

Attention core (causal, FlashAttention): ``2 * a/tp * (d_qk + d_v) * pairs`` FLOPs forward,
pairs = s^2/2 per sequence (s*W - W^2/2 with a sliding window W), divided by cp (ring attention
with the load-balanced split gives every rank the same pairs). Without FlashAttention the
(Megatron 2021) kernels compute the full s x s score matrix.

MFU convention (stated once, used everywhere):

    model FLOPs per token = 6 * N_mm + 6 * sum_layers a (d_qk + d_v) * keys
                             (trained weights; LoRA: 4 * N_mm, no weight gradients)
    N_mm  = parameters that take part in a matmul per token: every active weight except the
            input embedding / position-embedding lookups, plus the LM head (counted once even
            when tied to the embedding)
    keys  = the average keys a query attends to: s/2 for causal full attention
            (12 L h s * 1/2 per token for standard MHA), W - W^2/(2s) in a sliding window

MFU = model FLOPs per step / (step time * num_gpus * dense peak of the training dtype: bf16,
or fp8 when dtype='fp8'). HFU adds the recomputed forward FLOPs (full: one more forward of the
layers; selective without FlashAttention: the attention core forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LlmsimError
from ..models.spec import ModelSpec


@dataclass(frozen=True)
class LayerKind:
    count: int
    window: int  # 0 = full causal attention
    moe: bool


@dataclass(frozen=True)
class Geometry:
    """The architecture numbers the training formulas need (scalars)."""

    name: str
    h: int
    L: int
    nh: int
    nkv: int
    d_qk: int
    d_v: int
    head_dim: int
    V: int
    f: int
    gated: bool
    mla: bool
    q_lora: int
    kv_lora: int
    rope_dim: int
    nope_dim: int
    E: int
    top_k: int
    f_e: int
    f_shared: int  # total width of the shared experts of one layer
    kinds: tuple[LayerKind, ...]
    dropout: bool
    rope: bool  # rotary embeddings applied to q, k (not with learned positions or ALiBi)
    # parameters
    attn_params: int
    kv_proj_params: int  # K and V projections (replicated once tp exceeds the KV heads)
    norm_params_layer: int
    dense_mlp_params: int
    expert_params: int
    shared_params: int
    router_params: int
    embed_params: int
    head_params: int  # untied LM head (0 when tied)
    final_norm_params: int
    tied: bool

    @classmethod
    def of(cls, m: ModelSpec, dropout: bool | None = None) -> Geometry:
        if m.num_linear_layers:
            raise LlmsimError(
                f"training estimation does not model {m.name}'s {m.num_linear_layers} linear-attention (Gated DeltaNet) layers",
                hint="serving (llmsim serve / estimate) models them; training step time and memory cover softmax-attention models",
            )
        if m.is_sparse_attention:
            raise LlmsimError(
                f"training estimation does not model {m.name}'s sparse attention (DeepSeek Sparse Attention: an indexer "
                f"and top-{m.index_topk} attention in every layer)",
                hint="serving (llmsim serve / estimate) models it; training step time and memory cover dense-attention models",
            )
        kinds = tuple(
            LayerKind(g.count, m.sliding_window if g.attention == "sliding" else 0, g.mlp == "moe") for g in m.layer_groups
        )
        if dropout is None:  # GPT-2/3, OPT, BLOOM era models trained with dropout; RMSNorm-era models without
            dropout = m.norm == "layernorm"
        kvp = 0 if m.is_mla else 2 * m.hidden_size * m.num_kv_heads * m.head_dim
        width = (m.shared_expert_intermediate_size or m.moe_intermediate_size) * m.num_shared_experts
        return cls(
            name=m.name, h=m.hidden_size, L=m.num_layers, nh=m.num_heads, nkv=m.num_kv_heads,
            d_qk=m.q_head_dim, d_v=m.attn_v_head_dim, head_dim=m.head_dim, V=m.vocab_size,
            f=m.intermediate_size, gated=m.gated_mlp, mla=m.is_mla, q_lora=m.q_lora_rank, kv_lora=m.kv_lora_rank,
            rope_dim=m.qk_rope_head_dim, nope_dim=m.qk_nope_head_dim,
            E=m.num_experts, top_k=m.experts_per_token, f_e=m.moe_intermediate_size, f_shared=width,
            kinds=kinds, dropout=bool(dropout), rope=not m.learned_pos_embeddings and m.architecture not in ("bloom", "gpt2", "opt"),
            attn_params=m.attention_params(), kv_proj_params=kvp, norm_params_layer=2 * m._norm_params(m.hidden_size),
            dense_mlp_params=m.dense_mlp_params() if m.num_dense_layers else 0,
            expert_params=m.expert_params() if m.is_moe else 0, shared_params=m.shared_expert_params() if m.is_moe else 0,
            router_params=m.router_params() if m.is_moe else 0,
            embed_params=m.embedding_params(), head_params=m.lm_head_params(),
            final_norm_params=m._norm_params(m.hidden_size), tied=m.tie_word_embeddings,
        )

    # ------------------------------------------------------------------ per-GPU shapes
    def kv_heads_local(self, tp):
        return np.maximum(1, self.nkv // tp) if not self.mla else self.nh // tp

    def attn_gemms(self, tp):
        """[(name, n, k, split)] of the attention projections on one GPU; split=False: replicated over tp."""
        if self.mla:
            nh = self.nh // tp
            out = []
            if self.q_lora:
                out += [("q_a", self.q_lora + 0 * tp, self.h, False), ("q_b", nh * self.d_qk, self.q_lora, True)]
            else:
                out += [("q", nh * self.d_qk, self.h, True)]
            out += [("kv_a", self.kv_lora + self.rope_dim + 0 * tp, self.h, False),
                    ("kv_b", nh * (self.nope_dim + self.d_v), self.kv_lora, True),
                    ("o", self.h + 0 * tp, nh * self.d_v, True)]
            return out
        nh = self.nh // tp
        g = self.kv_heads_local(tp)
        return [("qkv", (nh + 2 * g) * self.head_dim, self.h, True), ("o", self.h + 0 * tp, nh * self.head_dim, True)]

    def mlp_gemms(self, width_local):
        up = 2 * width_local if self.gated else width_local
        return [("mlp_up", up, self.h + 0 * width_local), ("mlp_down", self.h + 0 * width_local, width_local)]

    def pairs_per_seq(self, s: float, window: int, causal: bool = True) -> float:
        """(query, key) pairs of one sequence of s tokens."""
        if not causal:
            return float(s) * s
        if window and window < s:
            return float(s) * window - window * window / 2.0
        return float(s) * s / 2.0

    # ------------------------------------------------------------------ parameters on one GPU
    def layer_params_local(self, kind: LayerKind, tp, ep):
        """(dense-group params, expert params) of one layer on one GPU (numpy arrays over layouts)."""
        tp = np.asarray(tp, dtype=float)
        attn = self.attn_params / tp
        if not self.mla:
            # K/V projections replicated once tp exceeds the KV heads
            rep = np.maximum(1.0, tp / self.nkv)
            attn = attn + self.kv_proj_params / tp * (rep - 1.0)
        dense = attn + self.norm_params_layer
        if kind.moe:
            dense = dense + self.router_params + self.shared_params / tp
            expert = (self.E / np.asarray(ep, float)) * self.expert_params
        else:
            dense = dense + self.dense_mlp_params / tp
            expert = 0.0 * tp
        return dense, expert

    def mm_params_per_token(self) -> float:
        """N_mm of the MFU convention: active matmul weights (no embedding lookups), LM head once."""
        per_kind = 0.0
        for k in self.kinds:
            p = self.attn_params
            if k.moe:
                p += self.router_params + self.shared_params + self.top_k * self.expert_params
            else:
                p += self.dense_mlp_params
            per_kind += k.count * p
        return per_kind + self.V * self.h

    def attention_flops_per_token_fwd(self, s: int) -> float:
        """Forward attention-core FLOPs per token (all layers, causal, the MFU convention)."""
        total = 0.0
        for k in self.kinds:
            keys = self.pairs_per_seq(s, k.window) / s
            total += k.count * 2.0 * self.nh * (self.d_qk + self.d_v) * keys
        return total

    def model_flops_per_token(self, s: int, train_weights: bool = True) -> float:
        w = (6.0 if train_weights else 4.0) * self.mm_params_per_token()
        return w + 3.0 * self.attention_flops_per_token_fwd(s)

    def six_n(self, total_active_params: float) -> float:
        return 6.0 * total_active_params
