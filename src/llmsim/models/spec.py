"""ModelSpec: the architecture facts the cost and memory models need, and parameter counts.

One class covers every supported family. Dense (Llama, Mistral, Qwen), GQA,
MoE with routed + shared experts and dense first-k layers (Mixtral, Qwen3-MoE,
DeepSeek-V3, gpt-oss), MLA with a compressed latent KV cache (DeepSeek-V2/V3), MLA with
DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5: a lightning indexer scores every cached token
and each query attends to only its top-k),
sliding-window attention (Mistral v0.1, gpt-oss alternating layers), hybrid models whose
layers alternate softmax attention with Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5:
a fixed-size recurrent state per sequence instead of a growing KV cache in those layers) and
GPT-2/OPT style MHA with a GELU MLP, biases and learned position embeddings.

Every parameter count below is a closed-form sum over the weight matrices the
architecture defines; `param_breakdown()` lists each term so a reader can check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..dtypes import canonical as _canonical_dtype
from ..errors import LlmsimError


@dataclass(frozen=True)
class LayerGroup:
    """Consecutive-or-not layers that cost the same: `count` layers of one kind."""

    count: int
    attention: Literal["full", "sliding", "linear"]
    mlp: Literal["dense", "moe"]


class ModelSpec(BaseModel):
    """Architecture of a decoder-only transformer. Sizes are in elements, not bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="short catalog id, e.g. 'llama-3.1-70b'")
    hf_id: str | None = Field(None, description="Hugging Face repository id")
    aliases: tuple[str, ...] = ()
    source: str = Field("", description="where these facts come from")
    architecture: str = Field(description="HF model_type, e.g. 'llama', 'deepseek_v3'")

    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(0, ge=0, description="dense MLP width (dense layers)")
    gated_mlp: bool = Field(True, description="SwiGLU-style gate+up+down (3 matrices) vs up+down (2)")
    activation: str = "silu"
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    tie_word_embeddings: bool = False
    learned_pos_embeddings: bool = False
    max_position_embeddings: int = Field(4096, gt=0)

    # Mixture of experts
    num_experts: int = Field(0, ge=0)
    experts_per_token: int = Field(0, ge=0)
    moe_intermediate_size: int = Field(0, ge=0)
    num_shared_experts: int = Field(0, ge=0)
    shared_expert_intermediate_size: int = Field(0, ge=0, description="width of each shared expert")
    first_k_dense_layers: int = Field(0, ge=0, description="leading layers with a dense MLP")
    router_bias: bool = False
    expert_bias: bool = False

    # Multi-head latent attention (DeepSeek-V2/V3): kv_lora_rank > 0 enables it
    q_lora_rank: int = Field(0, ge=0)
    kv_lora_rank: int = Field(0, ge=0)
    qk_nope_head_dim: int = Field(0, ge=0)
    qk_rope_head_dim: int = Field(0, ge=0)
    v_head_dim: int = Field(0, ge=0)

    # DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5), on MLA layers: index_topk > 0 enables it
    index_n_heads: int = Field(0, ge=0, description="heads of the lightning indexer")
    index_head_dim: int = Field(0, ge=0, description="query / key width of an indexer head")
    index_topk: int = Field(0, ge=0, description="cached tokens each query attends to: the indexer's top-k; 0 = dense")

    # Sliding-window attention
    sliding_window: int = Field(0, ge=0, description="window in tokens; 0 = none")
    layer_types: tuple[Literal["full", "sliding", "linear"], ...] = Field(
        (), description="per-layer attention kind ('linear' = Gated DeltaNet); empty = all 'sliding' if "
                        "sliding_window else all 'full'"
    )
    attn_output_gate: bool = Field(False, description="softmax-attention output gated by sigmoid(x W_g) (Qwen3-Next / "
                                   "Qwen3.5: q_proj also produces the gate, doubling its width)")

    # Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5), the layers layer_types marks 'linear'
    linear_num_key_heads: int = Field(0, ge=0, description="query / key heads of a linear-attention layer")
    linear_num_value_heads: int = Field(0, ge=0, description="value heads (each holds a key_dim x value_dim state)")
    linear_key_head_dim: int = Field(0, ge=0)
    linear_value_head_dim: int = Field(0, ge=0)
    linear_conv_kernel_dim: int = Field(4, ge=1, description="causal depthwise conv over q, k, v before the recurrence")
    attention_sinks: bool = Field(False, description="gpt-oss learned per-head sink logits")
    native_weight_dtype: str = Field("", description="weight format of the model's published quantised checkpoint "
                                     "('fp4', 'int4', 'fp8', ...; '' = none / unknown), from its quantization_config")
    native_unquantized: tuple[Literal["attention", "attention_qkv", "attention_out", "shared_experts", "dense_mlp"], ...] = Field(
        (), description="parts that published checkpoint leaves in bf16 (quantization_config modules_to_not_convert / "
                        "ignore): gpt-oss's MXFP4 release keeps attention in bf16, Kimi-K2.5's INT4 release quantises "
                        "only the routed experts")
    checkpoint_unquantized: tuple[tuple[str, tuple[Literal["attention", "attention_qkv", "attention_out", "shared_experts", "dense_mlp"], ...]], ...] = Field(
        (),
        description="(weight format, parts) pairs: the parts the usual published checkpoint of another weight format "
                    "leaves in bf16 (catalog facts with their source). NVIDIA's NVFP4 DeepSeek-R1 release "
                    "(DeepSeek-R1-0528-FP4-v2) quantises only o_proj of the attention: (('fp4', ('attention_qkv',)),); "
                    "'attention_qkv' = every attention projection but the output one")
    native_weight_block_size: tuple[int, int] | None = Field(
        None, description="(rows, columns) of the published fp8 checkpoint's weight scale blocks (quantization_config "
                          "weight_block_size: DeepSeek-V3/R1 and MiniMax-M2.5 ship 128x128 block-scaled fp8); None = "
                          "per-tensor / per-channel scales or not fp8")

    num_mtp_layers: int = Field(0, ge=0, description="multi-token-prediction modules (not counted)")

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        if self.num_heads % self.num_kv_heads:
            raise LlmsimError(
                f"model {self.name}: num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.num_experts:
            if not (0 < self.experts_per_token <= self.num_experts) or self.moe_intermediate_size <= 0:
                raise LlmsimError(
                    f"model {self.name}: MoE needs 0 < experts_per_token <= num_experts and moe_intermediate_size > 0"
                )
        if self.layer_types and len(self.layer_types) != self.num_layers:
            raise LlmsimError(
                f"model {self.name}: layer_types has {len(self.layer_types)} entries for {self.num_layers} layers"
            )
        if self.num_linear_layers:
            nk, nv = self.linear_num_key_heads, self.linear_num_value_heads
            if min(nk, nv, self.linear_key_head_dim, self.linear_value_head_dim) <= 0 or nv % nk:
                raise LlmsimError(
                    f"model {self.name}: linear-attention layers need linear_num_key_heads, linear_num_value_heads "
                    f"(a multiple of the key heads), linear_key_head_dim and linear_value_head_dim > 0")
        if self.index_topk and (not self.is_mla or min(self.index_n_heads, self.index_head_dim) <= 0):
            raise LlmsimError(f"model {self.name}: sparse attention (index_topk) needs MLA (kv_lora_rank > 0), "
                              f"index_n_heads and index_head_dim > 0")
        if self.num_dense_layers and self.intermediate_size <= 0:
            raise LlmsimError(f"model {self.name}: dense layers need intermediate_size > 0")
        return self

    def bf16_part(self, part: str, weight_dtype: str) -> bool:
        """Whether `part` runs on bf16 weights when serving at `weight_dtype`.

        Parts: 'attention_qkv' (the q / k / v-side attention projections), 'attention_out' (the
        output projection), 'shared_experts', 'dense_mlp'. The published checkpoint's exclusions
        (`native_unquantized`) apply when that checkpoint's own format is served; another format
        is another checkpoint: its exclusions where the catalog records them
        (`checkpoint_unquantized`), else quantised throughout. An excluded 'attention' covers
        both attention parts, an excluded 'attention_qkv' or 'attention_out' only that one."""
        fmt = _canonical_dtype(weight_dtype)
        parts = next((p for f, p in self.checkpoint_unquantized if f == fmt), None)
        if parts is None:
            parts = self.native_unquantized if self.native_weight_dtype and fmt == self.native_weight_dtype else ()
        if part in ("attention_qkv", "attention_out") and "attention" in parts:
            return True
        return part in parts

    def block_scaled(self, weight_dtype: str) -> bool:
        """Whether fp8 weights served at `weight_dtype` are block-scaled: the published checkpoint is
        block-scaled fp8 (DeepSeek style) and that format is what is served. Engines then quantise
        activations per token group (1 x 128) in a separate kernel and run block-scaled GEMMs
        ('fp8_block' kernel tables / efficiency parameters) instead of per-tensor fp8 ones."""
        return self.native_weight_block_size is not None and self.native_weight_dtype == "fp8" and \
            _canonical_dtype(weight_dtype) == "fp8"

    # ------------------------------------------------------------------ structure
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_sparse_attention(self) -> bool:
        """DeepSeek Sparse Attention: each query attends to the `index_topk` cached tokens the indexer picks."""
        return self.index_topk > 0

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.first_k_dense_layers if self.is_moe else 0

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def num_sliding_layers(self) -> int:
        if self.layer_types:
            return sum(t == "sliding" for t in self.layer_types)
        return self.num_layers if self.sliding_window else 0

    @property
    def num_linear_layers(self) -> int:
        """Gated DeltaNet layers: no KV cache, a fixed recurrent state per sequence."""
        return sum(t == "linear" for t in self.layer_types)

    @property
    def num_kv_layers(self) -> int:
        """Layers that keep a KV cache (softmax attention, full or sliding)."""
        return self.num_layers - self.num_linear_layers

    @property
    def linear_conv_dim(self) -> int:
        """Channels of a linear-attention layer's causal conv: q, k (key heads) and v (value heads)."""
        return 2 * self.linear_num_key_heads * self.linear_key_head_dim + self.linear_num_value_heads * self.linear_value_head_dim

    @cached_property
    def layer_groups(self) -> tuple[LayerGroup, ...]:
        """Layers grouped by (attention kind, MLP kind), so each group is costed once."""
        counts: dict[tuple[str, str], int] = {}
        for i in range(self.num_layers):
            if self.layer_types:
                att = self.layer_types[i]
            else:
                att = "sliding" if self.sliding_window else "full"
            mlp = "moe" if (self.is_moe and i >= self.first_k_dense_layers) else "dense"
            counts[(att, mlp)] = counts.get((att, mlp), 0) + 1
        return tuple(LayerGroup(c, a, m) for (a, m), c in counts.items())  # type: ignore[arg-type]

    # q/k/v widths per token (all heads)
    @property
    def q_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.is_mla else self.head_dim

    @property
    def attn_v_head_dim(self) -> int:
        return self.v_head_dim if self.is_mla else self.head_dim

    @property
    def kv_cache_elements_per_token_per_layer(self) -> int:
        """Elements stored per token per layer: K and V for every KV head, or MLA's latent + rope key."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    @property
    def index_cache_bytes_per_token_per_layer(self) -> int:
        """The indexer's key cache, per token and layer: fp8 keys and one fp32 scale per 128 of them,
        whatever the KV-cache format (DeepSeek-V3.2's design; SGLang's NSA pool stores it so). 0 if dense."""
        if not self.is_sparse_attention:
            return 0
        return self.index_head_dim + 4 * -(-self.index_head_dim // 128)

    @property
    def linear_state_elements_per_layer(self) -> tuple[int, int]:
        """Per sequence and linear-attention layer: (recurrent state elements: value heads x
        key_dim x value_dim, conv state elements: conv channels x (kernel - 1))."""
        return (self.linear_num_value_heads * self.linear_key_head_dim * self.linear_value_head_dim,
                self.linear_conv_dim * (self.linear_conv_kernel_dim - 1))

    # ------------------------------------------------------------------ parameters
    def _norm_params(self, width: int) -> int:
        return width * (2 if self.norm == "layernorm" else 1)

    def attention_out_params(self) -> int:
        """Parameters of the attention output projection (o_proj), part of `attention_params`."""
        v = self.v_head_dim if self.is_mla else self.head_dim
        return self.num_heads * v * self.hidden_size + (self.hidden_size if self.o_bias else 0)

    def attention_params(self) -> int:
        h, nh, nkv, hd = self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim
        if self.is_mla:
            qd = self.q_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * nh * qd
            else:
                q = h * nh * qd
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
            kv_b = self.kv_lora_rank * nh * (self.qk_nope_head_dim + self.v_head_dim)
            o = nh * self.v_head_dim * h
            return q + kv_a + kv_b + o + self.indexer_params()
        p = h * nh * hd * (2 if self.attn_output_gate else 1) + 2 * h * nkv * hd + nh * hd * h
        if self.qkv_bias:
            p += (nh + 2 * nkv) * hd
        if self.o_bias:
            p += h
        if self.qk_norm:
            p += 2 * hd
        if self.attention_sinks:
            p += nh
        return p

    def indexer_params(self) -> int:
        """The lightning indexer of a sparse-attention layer (part of `attention_params`): wq_b (query
        latent -> index heads x head dim), wk (hidden -> one shared index key), the key's LayerNorm
        and weights_proj (hidden -> one weight per index head). 0 for dense attention."""
        if not self.is_sparse_attention:
            return 0
        h, nih, ihd = self.hidden_size, self.index_n_heads, self.index_head_dim
        return (self.q_lora_rank or h) * nih * ihd + h * ihd + 2 * ihd + h * nih

    def linear_attention_params(self) -> int:
        """One Gated DeltaNet layer: in_proj_qkvz (q, k, v and the output gate z), in_proj_ba (the
        per-value-head write strength beta and decay a), the depthwise conv, the per-head decay
        parameters (A_log, dt_bias), the gated RMSNorm (one value-head width) and out_proj."""
        h, nv = self.hidden_size, self.linear_num_value_heads
        dk, dv = self.linear_key_head_dim, self.linear_value_head_dim
        qkvz = h * (2 * self.linear_num_key_heads * dk + 2 * nv * dv)
        ba = h * 2 * nv
        conv = self.linear_conv_dim * self.linear_conv_kernel_dim
        return qkvz + ba + conv + 2 * nv + dv + nv * dv * h

    def _mlp_params(self, width: int, bias: bool) -> int:
        h = self.hidden_size
        if self.gated_mlp:
            return 3 * h * width + ((2 * width + h) if bias else 0)
        return 2 * h * width + ((width + h) if bias else 0)

    def dense_mlp_params(self) -> int:
        return self._mlp_params(self.intermediate_size, self.mlp_bias)

    def expert_params(self) -> int:
        """One routed expert."""
        return self._mlp_params(self.moe_intermediate_size, self.expert_bias)

    def shared_expert_params(self) -> int:
        """All shared experts of one layer together."""
        if not self.num_shared_experts:
            return 0
        width = self.shared_expert_intermediate_size or self.moe_intermediate_size
        return self.num_shared_experts * self._mlp_params(width, self.expert_bias)

    def router_params(self) -> int:
        return self.hidden_size * self.num_experts + (self.num_experts if self.router_bias else 0)

    def embedding_params(self) -> int:
        p = self.vocab_size * self.hidden_size
        if self.learned_pos_embeddings:
            p += self.max_position_embeddings * self.hidden_size
        return p

    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    def param_breakdown(self, active: bool = False) -> dict[str, int]:
        """Parameter count by component. `active=True` counts only the routed experts a token uses."""
        L = self.num_layers
        experts = self.experts_per_token if active else self.num_experts
        out = {
            "embedding": self.embedding_params(),
            "attention": self.num_kv_layers * self.attention_params() + self.num_linear_layers * self.linear_attention_params(),
            "norms": L * 2 * self._norm_params(self.hidden_size) + self._norm_params(self.hidden_size),
            "dense_mlp": self.num_dense_layers * self.dense_mlp_params(),
            "moe_router": self.num_moe_layers * self.router_params(),
            "moe_routed_experts": self.num_moe_layers * experts * self.expert_params() if self.is_moe else 0,
            "moe_shared_experts": self.num_moe_layers * self.shared_expert_params(),
            "lm_head": self.lm_head_params(),
        }
        return out

    @cached_property
    def total_params(self) -> int:
        return sum(self.param_breakdown(active=False).values())

    @cached_property
    def active_params(self) -> int:
        return sum(self.param_breakdown(active=True).values())

    def summary(self) -> dict:
        """JSON-ready description, including derived counts."""
        d = self.model_dump(mode="json")
        d["total_params"] = self.total_params
        d["active_params"] = self.active_params
        d["param_breakdown"] = self.param_breakdown()
        d["kv_cache_elements_per_token"] = self.kv_cache_elements_per_token_per_layer * self.num_kv_layers
        if self.is_sparse_attention:
            d["index_cache_bytes_per_token"] = self.index_cache_bytes_per_token_per_layer * self.num_kv_layers
        if self.num_linear_layers:
            d["linear_state_elements_per_sequence"] = sum(self.linear_state_elements_per_layer) * self.num_linear_layers
        return d
