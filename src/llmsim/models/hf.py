"""Build a ModelSpec from a Hugging Face `config.json`.

Supported `model_type`s: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, qwen3_next,
qwen3_5, qwen3_5_moe, deepseek_v2, deepseek_v3, deepseek_v32, glm_moe_dsa, kimi_k2, kimi_k25,
minimax_m2, gpt_oss, gpt2, opt. Each
reader maps the keys its architecture publishes onto ModelSpec's fields; where a
key is optional, the default is the one the matching `transformers` config class
uses, so a config.json that omits it means the same thing here as in `transformers`.

* kimi_k2 (Kimi-K2) is the DeepSeek-V3 architecture under another name and is read
  by the DeepSeek reader. kimi_k25 (Kimi-K2.5) wraps that language model in a
  multimodal config: the `text_config` is read; the vision tower (MoonViT) and its
  projector are not modelled (text serving; an image request would add encoder work).
* minimax_m2 (MiniMax-M2/M2.1/M2.5): GQA softmax attention in every layer, top-k MoE
  in every layer with a sigmoid router and per-expert score-correction bias, no shared
  expert. Partial RoPE (`rotary_dim`) does not change any weight or cost term. Its
  QK-norm weights span all heads (`qk_norm_type` "per_layer": (heads + kv_heads) x
  head_dim per layer) where ModelSpec counts 2 x head_dim: 6,912 parameters per layer
  less (0.4M of 229B for M2.5). Lightning (linear) attention layers
  (`attn_type_list` entries 0, as in MiniMax-01), sliding windows and shared experts
  are rejected rather than approximated.
* qwen3_next (Qwen3-Next) and qwen3_5 / qwen3_5_moe (Qwen3.5, whose language model sits in
  `text_config`; the vision tower is not modelled): hybrid models whose `layer_types`
  (default: every `full_attention_interval`-th layer full, the rest linear) alternate gated
  softmax attention (`attn_output_gate`, per-head QK-norm) with Gated DeltaNet linear
  attention (`linear_*` keys, all required). MoE variants have one shared expert
  (`shared_expert_intermediate_size`); its scalar sigmoid gate (hidden_size weights per
  layer) is not counted. The multi-token-prediction layer is not counted either.
* deepseek_v32 (DeepSeek-V3.2) and glm_moe_dsa (GLM-5): DeepSeek-V3's MLA + MoE with
  DeepSeek Sparse Attention: every layer has a lightning indexer (`index_n_heads`,
  `index_head_dim`) that scores all cached tokens, and attention reads only the
  `index_topk` best (all three keys required). Configs in which some layers reuse another
  layer's selection (`index_topk_pattern`, `indexer_types`, `index_topk_freq` > 1) are
  rejected.

What the readers deliberately do not model (all tiny or absent in the catalog):

* OPT's learned position table has `max_position_embeddings + 2` rows (fairseq
  offset); the two extra rows (2 x hidden parameters) are not counted.
* OPT with `word_embed_proj_dim != hidden_size` (only OPT-350m) needs extra
  project_in/out matrices that ModelSpec has no field for: rejected.
* Qwen-MoE `mlp_only_layers` / `decoder_sparse_step` and DeepSeek `moe_layer_freq`
  patterns other than "the first k layers are dense" are rejected.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import LlmsimError
from .spec import ModelSpec

__all__ = ["from_hf_config", "load_hf_config_file", "SUPPORTED_MODEL_TYPES"]

_MISSING = object()


class _Cfg:
    """Read access to a config dict that names its origin in every error."""

    def __init__(self, cfg: dict, origin: str, model_type: str):
        self.cfg = cfg
        self.origin = origin
        self.model_type = model_type

    def req(self, key: str, *alternatives: str) -> Any:
        for k in (key, *alternatives):
            v = self.cfg.get(k, _MISSING)
            if v is not _MISSING and v is not None:
                return v
        names = " or ".join(repr(k) for k in (key, *alternatives))
        raise LlmsimError(
            f"{self.origin}: required key {names} is missing from the {self.model_type!r} config",
            hint="copy the model's config.json from its Hugging Face repository unchanged",
        )

    def get(self, key: str, default: Any = None, *alternatives: str) -> Any:
        """Value of the first present, non-null key; `default` otherwise (null means default)."""
        for k in (key, *alternatives):
            v = self.cfg.get(k, _MISSING)
            if v is not _MISSING and v is not None:
                return v
        return default

    def _as_int(self, key: str, v: Any, *, positive: bool = False) -> int:
        """`v` as an int; a clear error naming `key` for non-integers (inf / NaN included) and
        negative values (every integer a config.json gives is a size or a count), or 0 with `positive`."""
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                or int(v) != v):
            raise LlmsimError(f"{self.origin}: key {key!r} must be an integer, got {v!r}")
        if v < 0 or (positive and v == 0):
            raise LlmsimError(f"{self.origin}: key {key!r} must be {'greater than 0' if positive else 'at least 0'}, got {v!r}",
                              hint="copy the model's config.json from its Hugging Face repository unchanged")
        return int(v)

    def int(self, key: str, default: Any = _MISSING, *alternatives: str, positive: bool = False) -> int:
        """A whole, non-negative count (> 0 with `positive`); absent or null gives `default`."""
        v = self.req(key, *alternatives) if default is _MISSING else self.get(key, default, *alternatives)
        return self._as_int(key, v, positive=positive)

    def bool(self, key: str, default: bool) -> bool:
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise LlmsimError(f"{self.origin}: key {key!r} must be true or false, got {v!r}")
        return v

    def fail(self, message: str, hint: str | None = None) -> LlmsimError:
        return LlmsimError(f"{self.origin}: {message}", hint=hint)


# ---------------------------------------------------------------------- shared pieces
def _attention(c: _Cfg, *, derive_head_dim: bool = True, kv_default: int | None = None, head_dim_default: int = 0) -> dict:
    """`kv_default` / `head_dim_default`: the model type's `transformers` default where the key is
    absent (MistralConfig / MixtralConfig: 8 KV heads; Qwen2Config / Qwen3Config: 32 KV heads;
    Qwen3Config: head_dim 128); a null value, or a type without one, falls back as noted below."""
    hidden = c.int("hidden_size", positive=True)
    heads = c.int("num_attention_heads", positive=True)
    # absent: the type's default; null (or no default): multi-head attention, as transformers does
    kv = c.int("num_key_value_heads", kv_default if kv_default is not None and "num_key_value_heads" not in c.cfg else heads,
               positive=True)
    # absent or null: the type's default, else derived from hidden_size / num_attention_heads; an explicit 0 is an error
    head_dim = c.int("head_dim", head_dim_default if "head_dim" not in c.cfg else 0, positive=c.get("head_dim") is not None)
    if not head_dim and derive_head_dim:
        if hidden % heads:
            raise c.fail(f"hidden_size={hidden} is not a multiple of num_attention_heads={heads}",
                         hint="give 'head_dim' explicitly")
        head_dim = hidden // heads
    return {
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": kv,
        "head_dim": head_dim,
        "num_layers": c.int("num_hidden_layers", positive=True),
        "vocab_size": c.int("vocab_size", positive=True),
    }


_HYBRID_TYPES = ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text")  # model_types whose layers may be linear attention


def _layer_types(c: _Cfg, num_layers: int) -> tuple[str, ...] | None:
    """The config's explicit per-layer attention kinds, mapped to 'full'/'sliding' (and 'linear' for `_HYBRID_TYPES`)."""
    raw = c.get("layer_types")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != num_layers:
        raise c.fail(f"'layer_types' must be a list with one entry per layer ({num_layers})")
    out = []
    for t in raw:
        if t in ("sliding_attention", "sliding"):
            out.append("sliding")
        elif t in ("full_attention", "full"):
            out.append("full")
        elif t in ("linear_attention", "linear") and c.model_type in _HYBRID_TYPES:
            out.append("linear")
        else:
            linear = ", 'linear_attention' (Gated DeltaNet)" if c.model_type in _HYBRID_TYPES else ""
            raise c.fail(f"unsupported layer type {t!r} in 'layer_types'",
                         hint=f"supported: 'sliding_attention', 'full_attention'{linear}")
    return tuple(out)



def _sliding(c: _Cfg, num_layers: int, *, gated_by_flag: bool) -> dict:
    """Sliding-window fields.

    Mistral/Mixtral: a non-null `sliding_window` applies to every layer.
    Qwen2/Qwen3: `sliding_window` is only used when `use_sliding_window` is true, and then
    only on layers at index >= `max_window_layers` (the first ones stay full), unless the
    config lists `layer_types` explicitly.
    """
    window = c.int("sliding_window", 0)
    types = _layer_types(c, num_layers)
    if gated_by_flag and not c.bool("use_sliding_window", False):
        return {"sliding_window": 0, "layer_types": ()}
    if not window:
        return {"sliding_window": 0, "layer_types": ()}
    if types is None and gated_by_flag:
        full = min(c.int("max_window_layers", num_layers), num_layers)
        types = ("full",) * full + ("sliding",) * (num_layers - full)
    if types is not None:
        if "sliding" not in types:
            return {"sliding_window": 0, "layer_types": ()}
        if "full" not in types:
            types = ()
    return {"sliding_window": window, "layer_types": types or ()}


def _max_pos(c: _Cfg, default: int) -> int:
    """The context length: max_position_embeddings, extended by a YaRN / dynamic / linear
    `rope_scaling` to original_max_position_embeddings (or max_position_embeddings) x factor, as
    model cards tell users to enable long context (Qwen3 with yarn factor 4 over 32,768: 131,072).
    Llama 3's 'llama3' scaling is already in its max_position_embeddings."""
    n = c.int("max_position_embeddings", default, positive=True)
    rs = c.get("rope_scaling")
    if rs is None:
        return n
    if not isinstance(rs, dict):
        raise c.fail(f"'rope_scaling' must be a mapping (e.g. {{\"rope_type\": \"yarn\", \"factor\": 4.0}}) or null, got {rs!r}")
    kind = rs.get("rope_type", rs.get("type"))
    factor = rs.get("factor")
    if kind not in ("yarn", "dynamic", "linear") or factor is None:
        return n
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 1:
        raise c.fail(f"rope_scaling factor must be a number >= 1, got {factor!r}")
    orig = rs.get("original_max_position_embeddings", n)
    if isinstance(orig, bool) or not isinstance(orig, int) or orig < 1:
        raise c.fail(f"rope_scaling original_max_position_embeddings must be a positive integer, got {orig!r}")
    return max(n, int(orig * factor))


# ---------------------------------------------------------------------- readers
def _llama_like(c: _Cfg, *, max_pos_default: int, gated_sliding: bool, mistral_sliding: bool,
                qkv_bias_default: bool = False, o_bias_from_attention_bias: bool = True,
                qk_norm: bool = False, kv_default: int | None = None, head_dim_default: int = 0) -> dict:
    f = _attention(c, kv_default=kv_default, head_dim_default=head_dim_default)
    L = f["num_layers"]
    attention_bias = c.bool("attention_bias", False)
    f.update(
        intermediate_size=c.int("intermediate_size"),
        activation=c.get("hidden_act", "silu"),
        qkv_bias=qkv_bias_default or attention_bias,
        o_bias=attention_bias and o_bias_from_attention_bias,
        mlp_bias=c.bool("mlp_bias", False),
        qk_norm=qk_norm,
        tie_word_embeddings=c.bool("tie_word_embeddings", False),
        max_position_embeddings=_max_pos(c, max_pos_default),
    )
    if mistral_sliding or gated_sliding:
        f.update(_sliding(c, L, gated_by_flag=gated_sliding))
    return f


def _read_llama(c: _Cfg) -> dict:
    # LlamaConfig: attention_bias covers q/k/v/o; max_position_embeddings default 2048
    return _llama_like(c, max_pos_default=2048, gated_sliding=False, mistral_sliding=False)


def _read_mistral(c: _Cfg) -> dict:
    # MistralConfig: sliding_window (default 4096, null = none) applies to every layer
    if "sliding_window" not in c.cfg:
        c.cfg = {**c.cfg, "sliding_window": 4096}
    return _llama_like(c, max_pos_default=4096 * 32, gated_sliding=False, mistral_sliding=True, kv_default=8)


def _read_mixtral(c: _Cfg) -> dict:
    f = _llama_like(c, max_pos_default=4096 * 32, gated_sliding=False, mistral_sliding=True, kv_default=8)
    f.update(
        num_experts=c.int("num_local_experts", 8),
        experts_per_token=c.int("num_experts_per_tok", 2),
        moe_intermediate_size=f["intermediate_size"],
        intermediate_size=0,  # every layer is MoE: no dense MLP
    )
    return f


def _read_qwen2(c: _Cfg) -> dict:
    # Qwen2 (and Qwen2.5): q/k/v projections always carry a bias, o_proj does not
    _qwen_sliding_defaults(c)
    return _llama_like(c, max_pos_default=32768, gated_sliding=True, mistral_sliding=False,
                       qkv_bias_default=True, o_bias_from_attention_bias=False, kv_default=32)


def _read_qwen3(c: _Cfg, *, kv_default: int = 32, head_dim_default: int = 128, max_window_layers: int | None = 28) -> dict:
    # Qwen3: per-head RMSNorm on q and k; head_dim given explicitly (128 for every size, Qwen3Config's default)
    _qwen_sliding_defaults(c, max_window_layers)
    return _llama_like(c, max_pos_default=32768, gated_sliding=True, mistral_sliding=False, qk_norm=True,
                       kv_default=kv_default, head_dim_default=head_dim_default)


def _qwen_sliding_defaults(c: _Cfg, max_window_layers: int | None = 28) -> None:
    """Qwen2Config / Qwen3Config: sliding_window 4096 and max_window_layers 28 where absent (they
    act only with use_sliding_window true; Qwen3MoeConfig has no max_window_layers)."""
    defaults = [("sliding_window", 4096)] + ([("max_window_layers", max_window_layers)] if max_window_layers is not None else [])
    add = {k: v for k, v in defaults if k not in c.cfg}
    if add:
        c.cfg = {**c.cfg, **add}


def _moe_dense_prefix(c: _Cfg, num_layers: int) -> int:
    """Qwen-MoE: number of leading dense layers; rejects patterns ModelSpec cannot express."""
    mlp_only = sorted(set(c.get("mlp_only_layers", []) or []))
    step = c.int("decoder_sparse_step", 1)
    if mlp_only != list(range(len(mlp_only))):
        raise c.fail(f"mlp_only_layers={mlp_only} is not a prefix of the layers",
                     hint="only 'the first k layers are dense' is supported")
    if step != 1:
        raise c.fail(f"decoder_sparse_step={step} is not supported", hint="only every-layer MoE (1) is supported")
    return len(mlp_only)


def _read_qwen3_moe(c: _Cfg) -> dict:
    # Qwen3MoeConfig's defaults: 4 KV heads; no head_dim default (hidden_size / heads)
    f = _read_qwen3(c, kv_default=4, head_dim_default=0, max_window_layers=None)
    dense = _moe_dense_prefix(c, f["num_layers"])
    f.update(
        num_experts=c.int("num_experts"),
        experts_per_token=c.int("num_experts_per_tok"),
        moe_intermediate_size=c.int("moe_intermediate_size"),
        first_k_dense_layers=dense,
    )
    if not dense:
        f["intermediate_size"] = 0
    return f


def _read_qwen_hybrid(c: _Cfg) -> dict:
    """Qwen3-Next / Qwen3.5 language model: gated softmax attention every
    `full_attention_interval`-th layer, Gated DeltaNet elsewhere, dense or MoE MLPs."""
    f = _attention(c)
    L = f["num_layers"]
    types = _layer_types(c, L)
    if types is None:
        every = c.int("full_attention_interval", 4)
        if every < 1:
            raise c.fail(f"full_attention_interval must be >= 1, got {every}")
        types = tuple("full" if (i + 1) % every == 0 else "linear" for i in range(L))
    if "sliding" in types:
        raise c.fail("'layer_types' lists sliding-window layers; not supported for this hybrid architecture")
    f.update(
        activation=c.get("hidden_act", "silu"),
        qk_norm=True,
        attn_output_gate=c.bool("attn_output_gate", True),
        qkv_bias=c.bool("attention_bias", False),
        o_bias=c.bool("attention_bias", False),
        tie_word_embeddings=c.bool("tie_word_embeddings", False),
        max_position_embeddings=_max_pos(c, 32768),
        layer_types=types,
        linear_num_key_heads=c.int("linear_num_key_heads"),
        linear_num_value_heads=c.int("linear_num_value_heads"),
        linear_key_head_dim=c.int("linear_key_head_dim"),
        linear_value_head_dim=c.int("linear_value_head_dim"),
        linear_conv_kernel_dim=c.int("linear_conv_kernel_dim", 4),
    )
    experts = c.int("num_experts", 0)
    if experts:
        dense = _moe_dense_prefix(c, L)
        shared = c.int("shared_expert_intermediate_size", 0)
        f.update(
            num_experts=experts,
            experts_per_token=c.int("num_experts_per_tok"),
            moe_intermediate_size=c.int("moe_intermediate_size"),
            num_shared_experts=1 if shared else 0,
            shared_expert_intermediate_size=shared,
            first_k_dense_layers=dense,
            intermediate_size=c.int("intermediate_size") if dense else 0,
        )
    else:
        f["intermediate_size"] = c.int("intermediate_size")
    return f


def _text_config(c: _Cfg, default_type: str, supported: tuple[str, ...]) -> _Cfg:
    """The language model's config inside a multimodal wrapper's `text_config`."""
    text = c.get("text_config")
    if not isinstance(text, dict):
        raise c.fail("required key 'text_config' (the language model's config) is missing or not an object",
                     hint="copy the model's config.json from its Hugging Face repository unchanged")
    inner = str(text.get("model_type") or default_type)
    if inner not in supported:
        raise c.fail(f"text_config model_type {inner!r} is not supported",
                     hint=f"supported text models for {c.model_type}: {', '.join(repr(t) for t in supported)}")
    return _Cfg(text, f"{c.origin} (text_config)", inner)


def _read_qwen3_5(c: _Cfg) -> dict:
    """Qwen3.5 (dense or MoE): a multimodal wrapper whose `text_config` is the hybrid language model."""
    return _read_qwen_hybrid(_text_config(c, f"{c.model_type}_text", ("qwen3_5_text", "qwen3_5_moe_text")))


_SPARSE_TYPES = ("deepseek_v32", "glm_moe_dsa")  # MLA with DeepSeek Sparse Attention


def _sparse_attention(c: _Cfg) -> dict:
    """DeepSeek Sparse Attention's indexer (DeepSeek-V3.2, GLM-5): one on every layer."""
    shared = [k for k in ("index_topk_pattern", "indexer_types") if c.get(k) is not None]
    if shared or c.int("index_topk_freq", 1) != 1:
        raise c.fail(f"layers sharing another layer's indexer selection ({', '.join(shared) or 'index_topk_freq'}) "
                     f"are not supported", hint="llmsim models an indexer on every layer (DeepSeek-V3.2, GLM-5)")
    return {"index_n_heads": c.int("index_n_heads"), "index_head_dim": c.int("index_head_dim"),
            "index_topk": c.int("index_topk")}


def _read_deepseek(c: _Cfg) -> dict:
    f = _attention(c, derive_head_dim=False)  # MLA head widths come from qk_*_head_dim
    L = f["num_layers"]
    nope, rope = c.int("qk_nope_head_dim"), c.int("qk_rope_head_dim")
    freq = c.int("moe_layer_freq", 1)
    if freq != 1:
        raise c.fail(f"moe_layer_freq={freq} is not supported", hint="only every layer after the dense prefix being MoE (1)")
    routed = c.int("n_routed_experts", 0)
    f.update(
        head_dim=nope + rope,  # query/key head width (MLA)
        intermediate_size=c.int("intermediate_size"),
        activation=c.get("hidden_act", "silu"),
        tie_word_embeddings=c.bool("tie_word_embeddings", False),
        max_position_embeddings=_max_pos(c, 4096),
        q_lora_rank=c.int("q_lora_rank", 0),  # null: queries projected directly (V2-Lite)
        kv_lora_rank=c.int("kv_lora_rank", positive=True),  # 0 would silently be plain multi-head attention
        qk_nope_head_dim=nope,
        qk_rope_head_dim=rope,
        v_head_dim=c.int("v_head_dim"),
        num_mtp_layers=c.int("num_nextn_predict_layers", 0),
    )
    if c.bool("attention_bias", False):
        raise c.fail("attention_bias=true is not supported for MLA attention")
    if c.model_type in _SPARSE_TYPES:
        f.update(_sparse_attention(c))
    if routed:
        shared = c.int("n_shared_experts", 0)
        moe_width = c.int("moe_intermediate_size")
        f.update(
            num_experts=routed,
            experts_per_token=c.int("num_experts_per_tok"),
            moe_intermediate_size=moe_width,
            num_shared_experts=shared,
            shared_expert_intermediate_size=moe_width if shared else 0,
            first_k_dense_layers=min(c.int("first_k_dense_replace", 0), L),
            # DeepSeek-V3's aux-loss-free routing keeps a per-expert score-correction bias
            router_bias=c.get("topk_method") == "noaux_tc",
        )
    return f


def _read_kimi_k25(c: _Cfg) -> dict:
    """Kimi-K2.5: a multimodal wrapper whose `text_config` is a Kimi-K2 (DeepSeek-V3) model."""
    # KimiK25Config's text_config is a DeepseekV3Config
    return _read_deepseek(_text_config(c, "kimi_k2", ("kimi_k2", "deepseek_v3")))


def _read_minimax_m2(c: _Cfg) -> dict:
    # Optional keys default as in transformers' MiniMaxM2Config (8 KV heads of 128, 256 experts
    # top-8, untied, 196608 positions; QK-norm and the routing bias always on); the other keys
    # (attn_type_list, shared_intermediate_size, use_mtp/num_mtp_modules) are the remote-code config's.
    for key, default in (("head_dim", 128), ("num_key_value_heads", 8)):
        if c.cfg.get(key) is None:
            c.cfg = {**c.cfg, key: default}
    f = _attention(c)
    L = f["num_layers"]
    types = c.get("attn_type_list")
    if types is not None:
        if not isinstance(types, list) or len(types) != L:
            raise c.fail(f"'attn_type_list' must be a list with one entry per layer ({L})")
        if any(t != 1 for t in types):
            raise c.fail("attn_type_list marks layers as lightning (linear) attention (0)",
                         hint="only softmax-attention layers (1) are supported, as in MiniMax-M2/M2.1/M2.5")
    if c.get("sliding_window"):
        raise c.fail("sliding_window is not supported for minimax_m2 (M2-family models use full attention)")
    layer_types = _layer_types(c, L)
    if layer_types is not None and "sliding" in layer_types:
        raise c.fail("'layer_types' lists sliding-window layers; not supported for minimax_m2")
    if c.int("shared_intermediate_size", 0):
        raise c.fail("shared experts (shared_intermediate_size > 0) are not supported for minimax_m2")
    if c.bool("attention_bias", False):
        raise c.fail("attention_bias=true is not supported for minimax_m2")
    mtp = c.int("num_mtp_modules", 0) if c.bool("use_mtp", False) else 0
    f.update(
        num_experts=c.int("num_local_experts", 256, "num_experts"),
        experts_per_token=c.int("num_experts_per_tok", 8),
        moe_intermediate_size=c.int("intermediate_size", 1536),  # the expert width: every layer is MoE
        intermediate_size=0,
        activation=c.get("hidden_act", "silu"),
        qk_norm=c.bool("use_qk_norm", True),
        router_bias=c.bool("use_routing_bias", True),  # e_score_correction_bias, one per expert
        tie_word_embeddings=c.bool("tie_word_embeddings", False),
        max_position_embeddings=_max_pos(c, 196608),
        num_mtp_layers=mtp,
    )
    return f


def _read_gpt_oss(c: _Cfg) -> dict:
    f = _attention(c)
    L = f["num_layers"]
    types = _layer_types(c, L)
    if types is None:  # GptOssConfig default: even layers sliding, odd layers full
        types = tuple("sliding" if (i + 1) % 2 else "full" for i in range(L))
    window = c.int("sliding_window", 128)
    if not window or "sliding" not in types:
        window, types = 0, ()
    width = c.int("intermediate_size")
    attention_bias = c.bool("attention_bias", True)
    f.update(
        num_experts=c.int("num_local_experts", _MISSING, "num_experts"),
        experts_per_token=c.int("num_experts_per_tok", _MISSING, "experts_per_token"),
        moe_intermediate_size=width,
        intermediate_size=0,
        activation=c.get("hidden_act", "silu"),
        qkv_bias=attention_bias,
        o_bias=attention_bias,
        expert_bias=True,
        router_bias=True,
        attention_sinks=True,
        tie_word_embeddings=c.bool("tie_word_embeddings", False),
        max_position_embeddings=_max_pos(c, 131072),
        sliding_window=window,
        layer_types=types,
    )
    return f


def _read_gpt2(c: _Cfg) -> dict:
    hidden = c.int("n_embd", _MISSING, "hidden_size", positive=True)
    heads = c.int("n_head", _MISSING, "num_attention_heads", positive=True)
    if hidden % heads:
        raise c.fail(f"n_embd={hidden} is not a multiple of n_head={heads}")
    inner = c.int("n_inner", 4 * hidden)  # null: 4 x n_embd
    return {
        "hidden_size": hidden,
        "num_layers": c.int("n_layer", _MISSING, "num_hidden_layers", positive=True),
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": hidden // heads,
        "vocab_size": c.int("vocab_size", positive=True),
        "intermediate_size": inner,
        "gated_mlp": False,
        "activation": c.get("activation_function", "gelu_new"),
        "norm": "layernorm",
        "qkv_bias": True,
        "o_bias": True,
        "mlp_bias": True,
        "learned_pos_embeddings": True,
        "tie_word_embeddings": c.bool("tie_word_embeddings", True),
        "max_position_embeddings": c.int("n_positions", 1024, "max_position_embeddings", positive=True),
    }


def _read_opt(c: _Cfg) -> dict:
    hidden = c.int("hidden_size", positive=True)
    heads = c.int("num_attention_heads", positive=True)
    proj = c.int("word_embed_proj_dim", hidden)
    if proj != hidden:
        raise c.fail(f"word_embed_proj_dim={proj} differs from hidden_size={hidden}",
                     hint="OPT checkpoints with project_in/project_out (OPT-350m) are not supported")
    if hidden % heads:
        raise c.fail(f"hidden_size={hidden} is not a multiple of num_attention_heads={heads}")
    bias = c.bool("enable_bias", True)
    return {
        "hidden_size": hidden,
        "num_layers": c.int("num_hidden_layers", positive=True),
        "num_heads": heads,
        "num_kv_heads": heads,
        "head_dim": hidden // heads,
        "vocab_size": c.int("vocab_size", positive=True),
        "intermediate_size": c.int("ffn_dim"),
        "gated_mlp": False,
        "activation": c.get("activation_function", "relu"),
        "norm": "layernorm",
        "qkv_bias": bias,
        "o_bias": bias,
        "mlp_bias": bias,
        "learned_pos_embeddings": True,
        "tie_word_embeddings": c.bool("tie_word_embeddings", True),
        "max_position_embeddings": _max_pos(c, 2048),
    }


_READERS: dict[str, Callable[[_Cfg], dict]] = {
    "llama": _read_llama,
    "mistral": _read_mistral,
    "mixtral": _read_mixtral,
    "qwen2": _read_qwen2,
    "qwen3": _read_qwen3,
    "qwen3_moe": _read_qwen3_moe,
    "qwen3_next": _read_qwen_hybrid,
    "qwen3_5": _read_qwen3_5,
    "qwen3_5_moe": _read_qwen3_5,
    "deepseek_v2": _read_deepseek,
    "deepseek_v3": _read_deepseek,
    "kimi_k2": _read_deepseek,  # Kimi-K2: DeepseekV3ForCausalLM under its own model_type
    "deepseek_v32": _read_deepseek,  # DeepSeek-V3.2: V3 plus sparse attention
    "glm_moe_dsa": _read_deepseek,  # GLM-5: DeepSeek-V3.2's MLA + sparse attention, GLM's sizes
    "kimi_k25": _read_kimi_k25,
    "minimax_m2": _read_minimax_m2,
    "gpt_oss": _read_gpt_oss,
    "gpt2": _read_gpt2,
    "opt": _read_opt,
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_READERS))


def _native_quantisation(cfg: dict) -> dict:
    """The published checkpoint's quantisation, from `quantization_config` (top level, or the
    language model's `text_config`): its weight format (mxfp4 -> 'fp4'; fp8; compressed-tensors
    by bits and type; ModelOpt's quant_algo) and the parts it leaves in bf16, read from the
    exclusion list (`modules_to_not_convert`, compressed-tensors' `ignore`, `ignored_layers`,
    ModelOpt's `exclude_modules`): self_attn -> attention (attention_qkv where only the q / kv
    projections are named), shared_expert(s) -> shared_experts,
    the dense MLP's gate/up/down projections -> dense_mlp; and for fp8 the scale block
    (`weight_block_size`, compressed-tensors' block strategy `block_structure`)."""
    q = cfg.get("quantization_config")
    if not isinstance(q, dict) and isinstance(cfg.get("text_config"), dict):
        q = cfg["text_config"].get("quantization_config")
    if not isinstance(q, dict):
        return {}
    method = str(q.get("quant_method", "")).lower()
    dtype = ""
    block: tuple[int, int] | None = None
    if method == "mxfp4":
        dtype = "fp4"
    elif method == "fp8":
        dtype = "fp8"
        block = _block_size(q.get("weight_block_size"))
    elif method == "modelopt":
        dtype = {"nvfp4": "fp4", "fp8": "fp8"}.get(str(q.get("quant_algo", "")).lower(), "")
    elif method == "compressed-tensors":
        for group in (q.get("config_groups") or {}).values():
            w = group.get("weights") if isinstance(group, dict) else None
            if isinstance(w, dict):
                bits: Any = w.get("num_bits")  # any JSON value: only 4 and 8 name a format
                kind = str(w.get("type", "int"))
                dtype = {(4, "int"): "int4", (8, "int"): "int8", (8, "float"): "fp8", (4, "float"): "fp4"}.get((bits, kind), "")
                if dtype == "fp8" and str(w.get("strategy", "")).lower() == "block":
                    block = _block_size(w.get("block_structure"))
                break
    names: list[str] = []
    for key in ("modules_to_not_convert", "ignore", "ignored_layers", "exclude_modules"):
        v = q.get(key)
        if isinstance(v, (list, tuple)):
            names += [str(n) for n in v]
    parts = []
    attn = [n for n in names if "self_attn" in n]
    if attn:
        # a whole-module exclusion (self_attn, self_attn*, re:.*self_attn.*) or one naming the output
        # projection covers all of attention; a list of q / kv projections only (ModelOpt's
        # DeepSeek-R1-0528-FP4-v2, which quantises o_proj) leaves o_proj quantised
        whole = any(re.search(r"self_attn(\*|\.\*)?\W*$", n) for n in attn)
        o_proj = any("o_proj" in n for n in attn)
        qkv = any(re.search(r"(q|k|v|qkv|q_a|q_b|kv_a|kv_b)_proj", n) for n in attn)
        parts.append("attention_qkv" if qkv and not (whole or o_proj) else "attention_out" if o_proj and not (whole or qkv)
                     else "attention")
    if any("shared_expert" in n for n in names):
        parts.append("shared_experts")
    if any("mlp" in n and ("gate_proj" in n or "up_proj" in n or "down_proj" in n or "(gate|up" in n) for n in names):
        parts.append("dense_mlp")
    out: dict = {"native_weight_dtype": dtype, "native_unquantized": tuple(parts)}
    if block is not None:
        out["native_weight_block_size"] = block
    return out


def _block_size(v) -> tuple[int, int] | None:
    """A (rows, columns) scale block from a config's weight_block_size / block_structure ([128, 128])."""
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
        return (int(v[0]), int(v[1]))
    return None


# ---------------------------------------------------------------------- public API
def _default_name(cfg: dict, hf_id: str | None, model_type: str) -> str:
    for candidate in (hf_id, cfg.get("_name_or_path")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.rstrip("/").split("/")[-1].lower()
    return f"custom-{model_type}"


def _build(cfg: Any, *, name: str | None, hf_id: str | None, aliases: Iterable[str], source: str,
           origin: str) -> ModelSpec:
    if not isinstance(cfg, dict):
        raise LlmsimError(f"{origin}: a config must be a JSON object, got {type(cfg).__name__}")
    model_type = cfg.get("model_type")
    if model_type is None:
        raise LlmsimError(
            f"{origin}: required key 'model_type' is missing",
            hint=f"Hugging Face configs name their architecture in 'model_type'; supported: {', '.join(SUPPORTED_MODEL_TYPES)}",
        )
    reader = _READERS.get(str(model_type))
    if reader is None:
        raise LlmsimError(
            f"{origin}: unsupported model_type {model_type!r}",
            hint=f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}",
        )
    fields = reader(_Cfg(cfg, origin, str(model_type)))
    for k, v in _native_quantisation(cfg).items():
        fields.setdefault(k, v)
    try:
        return ModelSpec(
            name=name or _default_name(cfg, hf_id, str(model_type)),
            hf_id=hf_id,
            aliases=tuple(aliases),
            source=source,
            architecture=str(model_type),
            **fields,
        )
    except LlmsimError:
        raise
    except ValueError as e:  # pydantic validation: a value out of range, or the spec's own checks
        raise LlmsimError(f"{origin}: invalid config: {_validation_text(e)}",
                          hint="the field names are llmsim's ModelSpec names; `llmsim models show` on a catalog model "
                               "prints them beside their values") from None


def _validation_text(e: ValueError) -> str:
    """A pydantic error as its messages alone (field: message; ...), without the input dump and
    the documentation link."""
    errors = getattr(e, "errors", None)
    if not callable(errors):
        return str(e)
    parts = []
    for err in errors():
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or str(e)


def from_hf_config(
    cfg: dict,
    *,
    name: str | None = None,
    hf_id: str | None = None,
    aliases: Iterable[str] = (),
    source: str = "",
) -> ModelSpec:
    """ModelSpec from a parsed Hugging Face config.json dict.

    `name` defaults to the last part of `hf_id` (or the config's `_name_or_path`), lower-cased.
    Raises LlmsimError for an unsupported `model_type` (listing the supported ones) or a
    missing required key (naming it).
    """
    origin = f"config of {hf_id or name}" if (hf_id or name) else "config"
    return _build(cfg, name=name, hf_id=hf_id, aliases=aliases, source=source, origin=origin)


def read_json_file(path: Path) -> Any:
    """Parse a JSON file, turning every failure into an LlmsimError that names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LlmsimError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LlmsimError(f"cannot read config file {str(path)!r}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LlmsimError(
            f"config file {str(path)!r} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}",
            hint="a Hugging Face config.json is a single JSON object",
        ) from None


def load_hf_config_file(path: str | Path) -> ModelSpec:
    """ModelSpec from a config.json file, or from a directory containing one."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
        if not p.is_file():
            raise LlmsimError(f"directory {str(p.parent)!r} has no config.json",
                              hint="pass the path of a Hugging Face model directory or its config.json")
    cfg = read_json_file(p)
    # named after its directory (the usual layout: <model-name>/config.json)
    name = p.resolve().parent.name.lower() or None
    return _build(cfg, name=name, hf_id=None, aliases=(), source=str(p), origin=str(p))
