"""Model catalog, Hugging Face config loader and parameter counts."""

from __future__ import annotations

import json

import pytest

from llmsim.errors import LlmsimError
from llmsim.models import LayerGroup, ModelSpec, from_hf_config, get_model, list_models
from llmsim.models.catalog import DATA_DIR
from llmsim.models.hf import SUPPORTED_MODEL_TYPES, load_hf_config_file

B = 1e9

# ----------------------------------------------------------------------------------------------
# Published parameter counts, one row per catalog model: (id, total, active, active convention,
# where the figures come from). Tolerance is 1% everywhere.
#
# Active-parameter conventions:
#   "all"       - every weight a token touches, embedding table included (ModelSpec.active_params)
#   "no_embed"  - the same minus the input-embedding table (a gather, no matmul); the output
#                 head stays in.
# gpt-oss: the model card's Table 1 lists "Embedding + Unembedding 1.16B" apart from the layers;
#   its active totals (5.13B / 3.61B) equal attention + active experts + router + unembedding, i.e.
#   our count without the input embedding: 5.133B / 3.608B (with it: 5.71B / 4.19B, +11%/+16%).
# DeepSeek-V3/R1: README_WEIGHTS.md gives 36.7B activated for the main model; our count without the
#   input embedding is 36.63B (-0.2%). With the embedding it is 37.55B (+2.3% vs 36.7B, +1.5% vs the
#   paper's rounded "37B"). The README's prose says both 0.9B tables are included, but its total only
#   closes without one of them (the difference, 0.93B, is exactly one 129280 x 7168 table), so we test
#   the convention the number actually follows. Totals exclude the 14B MTP module (README_WEIGHTS:
#   "Main Model Weights ... Total parameters: 671B"; num_nextn_predict_layers is not counted).
# Kimi-K2.5: its language model is Kimi-K2's (same config shapes; K2.5 is continual pre-training of
#   K2-Base), and K2.5's own checkpoint is INT4-packed, so its Hub parameter count (int32 words) says
#   nothing. Total: the Hub safetensors count of the block-FP8 moonshotai/Kimi-K2-Instruct checkpoint,
#   1026.5B, = our 1026.41B + 0.062B FP32 block scales (1026.47B). Active: the Kimi K2 report
#   (arXiv:2507.20534) Table 2, 32.6B, matches our count with the input embedding (32.86B, +0.8%;
#   without it 31.69B, -2.8%). The report's 1.04T (Table 4: 1043B) exceeds the released weights by
#   ~17B, about one more MoE layer: presumably an MTP module that was not released
#   (num_nextn_predict_layers = 0). The model cards round to 1T / 32B.
# MiniMax-M2.5: MiniMax publishes only "230 billion total parameters with 10 billion active" (M2
#   README; M2.1/M2.5 keep the architecture). Total: 228.69B (-0.6%). The active figure is given to one
#   significant digit, so it is checked by rounding (ACTIVE_REL_TOL: within 5%, i.e. our count rounds
#   to 10B): 10.42B without the input embedding (+4.2%), 11.03B with it.
# Qwen3.5-397B-A17B: the model card gives "397B in total, 17B activated". Total 396.35B (-0.2%; the
#   vision tower and the MTP layer are not counted). Active 17.35B with the input embedding, 16.33B
#   without: "17B" is two significant digits, so it is checked by rounding (within 3%).
# GLM-5: the model card gives "744B (40B active)". Total 743.91B (-0.01%; the MTP layer is not
#   counted). Active, under DeepSeek-V3's convention (input embedding out, LM head in): 40.83B (+2.1%;
#   39.88B without the LM head either); "40B" is two significant digits, so it is checked within 3%.
# ----------------------------------------------------------------------------------------------
PUBLISHED = [
    # Llama 2: safetensors counts shown on the meta-llama/Llama-2-*-hf model pages (the paper rounds to 7/13/70B)
    ("llama-2-7b", 6.74, 6.74, "all", "HF meta-llama/Llama-2-7b-hf: 6.74B"),
    ("llama-2-13b", 13.0, 13.0, "all", "HF meta-llama/Llama-2-13b-hf: 13.0B"),
    ("llama-2-70b", 69.0, 69.0, "all", "HF meta-llama/Llama-2-70b-hf: 69.0B"),
    ("llama-3-8b", 8.03, 8.03, "all", "HF meta-llama/Meta-Llama-3-8B: 8.03B"),
    ("llama-3-70b", 70.6, 70.6, "all", "HF meta-llama/Meta-Llama-3-70B: 70.6B"),
    ("llama-3.1-8b", 8.03, 8.03, "all", "HF meta-llama/Llama-3.1-8B: 8.03B"),
    ("llama-3.1-70b", 70.6, 70.6, "all", "HF meta-llama/Llama-3.1-70B: 70.6B"),
    ("llama-3.1-405b", 405.9, 405.9, "all", "HF meta-llama/Llama-3.1-405B: 405.9B (8 KV heads, Llama 3 paper Table 3)"),
    ("mistral-7b", 7.24, 7.24, "all", "HF mistralai/Mistral-7B-v0.1: 7.24B"),
    ("mixtral-8x7b", 46.7, 12.9, "all", "Mistral AI, 'Mixtral of experts' (2023-12-11): 46.7B total, 12.9B per token"),
    ("qwen2.5-7b-instruct", 7.61, 7.61, "all", "Qwen/Qwen2.5-7B-Instruct model card: 7.61B (non-embedding 6.53B)"),
    ("qwen3-32b", 32.8, 32.8, "all", "Qwen/Qwen3-32B model card: 32.8B (non-embedding 31.2B)"),
    ("qwen3-235b-a22b", 235.0, 22.0, "all", "Qwen/Qwen3-235B-A22B model card: 235B total, 22B activated"),
    ("qwen3.5-397b-a17b", 397.0, 17.0, "all", "Qwen/Qwen3.5-397B-A17B model card: 397B total, 17B activated"),
    ("glm-5", 744.0, 40.0, "no_embed", "zai-org/GLM-5 model card: 744B total, 40B active"),
    ("deepseek-v3", 671.0, 36.7, "no_embed", "deepseek-ai/DeepSeek-V3 README_WEIGHTS.md: 671B, 36.7B activated"),
    ("deepseek-r1", 671.0, 36.7, "no_embed", "DeepSeek-R1 model card: 671B / 37B activated (V3 architecture)"),
    ("gpt-oss-120b", 116.83, 5.13, "no_embed", "gpt-oss model card (arXiv:2508.10925) Table 1: 116.83B / 5.13B"),
    ("gpt-oss-20b", 20.91, 3.61, "no_embed", "gpt-oss model card (arXiv:2508.10925) Table 1: 20.91B / 3.61B"),
    ("kimi-k2.5", 1026.5, 32.6, "all",
     "HF moonshotai/Kimi-K2-Instruct safetensors: 1026.5B (same text model); Kimi K2 report Table 2: 32.6B activated"),
    ("minimax-m2.5", 230.0, 10.0, "no_embed",
     "MiniMax-AI/MiniMax-M2 README: 230B total, 10B active (M2.5: same MiniMaxM2ForCausalLM architecture)"),
    ("gpt3-175b", 175.0, 175.0, "all", "Brown et al. 2020, Table 2.1: 175.0B"),
    ("gpt2", 0.124, 0.124, "all", "openai-community/gpt2 model card: 124M"),
    ("opt-6.7b", 6.7, 6.7, "all", "Zhang et al. 2022 (OPT), Table 1: 6.7B"),
    ("opt-66b", 66.0, 66.0, "all", "Zhang et al. 2022 (OPT), Table 1: 66B"),
]


# active figures published only to one or two significant digits: checked to that precision instead of 1%
ACTIVE_REL_TOL = {"minimax-m2.5": 0.05, "qwen3.5-397b-a17b": 0.03, "glm-5": 0.03}


def _active(spec: ModelSpec, convention: str) -> int:
    if convention == "all":
        return spec.active_params
    assert convention == "no_embed"
    return spec.active_params - spec.embedding_params()


@pytest.mark.parametrize("name,total_b,active_b,convention,source", PUBLISHED, ids=[r[0] for r in PUBLISHED])
def test_param_counts_match_published(name, total_b, active_b, convention, source):
    spec = get_model(name)
    assert spec.total_params / B == pytest.approx(total_b, rel=0.01), source
    assert _active(spec, convention) / B == pytest.approx(active_b, rel=ACTIVE_REL_TOL.get(name, 0.01)), source
    assert spec.total_params == sum(spec.param_breakdown().values())
    if not spec.is_moe:
        assert spec.active_params == spec.total_params


def test_every_catalog_model_has_a_published_count():
    assert {s.name for s in list_models()} == {r[0] for r in PUBLISHED}


def test_exact_counts_against_published_checkpoints():
    # safetensors totals of the published checkpoints: our closed form reproduces them exactly
    assert get_model("mistral-7b").total_params == 7_241_732_096
    assert get_model("llama-3.1-8b").total_params == 8_030_261_248
    assert get_model("llama-3-70b").total_params == 70_553_706_496
    assert get_model("llama-2-7b").total_params == 6_738_415_616
    assert get_model("gpt2").total_params == 124_439_808


# ----------------------------------------------------------------------------------------------
# catalog
# ----------------------------------------------------------------------------------------------
def test_catalog_files_have_the_documented_shape():
    files = sorted(DATA_DIR.glob("*.json"))
    assert len(files) == len(list_models()) >= 18
    for f in files:
        raw = json.loads(f.read_text())
        assert {"name", "hf_id", "aliases", "source", "config"} <= set(raw) <= {
            "name", "hf_id", "aliases", "source", "config", "checkpoint_unquantized"}, f.name
        assert f.stem == raw["name"], f.name
        assert raw["source"], f.name
        assert raw["config"]["model_type"] in SUPPORTED_MODEL_TYPES


def test_list_models_sorted_and_unique():
    names = [s.name for s in list_models()]
    assert names == sorted(names) and len(set(names)) == len(names)
    for required in ["llama-3.1-70b", "llama-2-70b", "mixtral-8x7b", "qwen3-32b", "qwen3-235b-a22b",
                     "deepseek-v3", "gpt-oss-120b", "mistral-7b", "gpt3-175b"]:
        assert required in names


@pytest.mark.parametrize(
    "query,expected",
    [
        ("llama-3.1-70b", "llama-3.1-70b"),
        ("LLaMA-3.1-70B", "llama-3.1-70b"),
        ("meta-llama/Llama-3.1-70B", "llama-3.1-70b"),
        ("meta-llama/llama-3.1-70b", "llama-3.1-70b"),
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", "llama-3.1-70b"),
        ("meta-llama/Llama-3.1-405B-Instruct", "llama-3.1-405b"),
        ("meta-llama/Meta-Llama-3-8B", "llama-3-8b"),
        ("meta-llama/Llama-2-70b-hf", "llama-2-70b"),
        ("mistralai/Mixtral-8x7B-v0.1", "mixtral-8x7b"),
        ("mistralai/Mistral-7B-v0.1", "mistral-7b"),
        ("deepseek-ai/DeepSeek-V3", "deepseek-v3"),
        ("deepseek-ai/DeepSeek-R1", "deepseek-r1"),
        ("openai/gpt-oss-120b", "gpt-oss-120b"),
        ("Qwen/Qwen3-235B-A22B", "qwen3-235b-a22b"),
        ("moonshotai/Kimi-K2.5", "kimi-k2.5"),
        ("MiniMaxAI/MiniMax-M2.5", "minimax-m2.5"),
        ("minimaxai/minimax-m2.5", "minimax-m2.5"),
        ("gpt-3", "gpt3-175b"),
        ("  qwen3-32b ", "qwen3-32b"),
    ],
)
def test_lookup_by_id_alias_hf_id_case_insensitive(query, expected):
    assert get_model(query).name == expected


def test_get_model_is_cached():
    assert get_model("llama-3.1-8b") is get_model("Meta-Llama/Llama-3.1-8B")


def test_unknown_model_suggests_close_matches():
    with pytest.raises(LlmsimError) as e:
        get_model("llama-3.1-7b")
    assert "unknown model 'llama-3.1-7b'" in e.value.message
    assert "did you mean" in e.value.hint and "llama-3.1-8b" in e.value.hint
    assert "llmsim models list" in e.value.hint and "config.json" in e.value.hint


def test_unknown_model_without_close_match():
    with pytest.raises(LlmsimError) as e:
        get_model("zzzz-nothing-like-it")
    assert "did you mean" not in e.value.hint
    assert "llmsim models list" in e.value.hint


def test_unknown_hf_id_suggests_by_repo_name():
    with pytest.raises(LlmsimError) as e:
        get_model("meta-llama/Llama-3.1-80B")
    assert "llama-3.1-" in e.value.hint


# ----------------------------------------------------------------------------------------------
# structure of the big models
# ----------------------------------------------------------------------------------------------
def test_gpt_oss_alternates_sliding_and_full():
    spec = get_model("gpt-oss-120b")
    assert spec.layer_types == ("sliding", "full") * 18
    assert spec.sliding_window == 128 and spec.head_dim == 64 and spec.attention_sinks
    assert set(spec.layer_groups) == {LayerGroup(18, "sliding", "moe"), LayerGroup(18, "full", "moe")}
    small = get_model("gpt-oss-20b")
    assert set(small.layer_groups) == {LayerGroup(12, "sliding", "moe"), LayerGroup(12, "full", "moe")}
    assert (small.num_experts, small.experts_per_token) == (32, 4)


def test_deepseek_v3_structure():
    spec = get_model("deepseek-v3")
    assert spec.layer_groups == (LayerGroup(3, "full", "dense"), LayerGroup(58, "full", "moe"))
    assert spec.is_mla and spec.kv_cache_elements_per_token_per_layer == 576  # 512 latent + 64 rope key
    assert (spec.num_experts, spec.experts_per_token, spec.num_shared_experts) == (256, 8, 1)
    assert spec.q_head_dim == 192 and spec.attn_v_head_dim == 128
    assert spec.num_mtp_layers == 1 and spec.router_bias


def test_kimi_k25_structure():
    spec = get_model("kimi-k2.5")
    assert spec.architecture == "kimi_k25" and spec.hf_id == "moonshotai/Kimi-K2.5"
    assert spec.layer_groups == (LayerGroup(1, "full", "dense"), LayerGroup(60, "full", "moe"))
    assert spec.is_mla and spec.kv_cache_elements_per_token_per_layer == 576  # 512 latent + 64 rope key
    assert (spec.num_heads, spec.q_lora_rank, spec.q_head_dim, spec.attn_v_head_dim) == (64, 1536, 192, 128)
    assert (spec.num_experts, spec.experts_per_token, spec.num_shared_experts) == (384, 8, 1)
    assert spec.moe_intermediate_size == spec.shared_expert_intermediate_size == 2048
    assert spec.router_bias and spec.num_mtp_layers == 0 and spec.vocab_size == 163840
    assert spec.max_position_embeddings == 262144
    # the exact count of the released weights: the Hub total of Kimi-K2-Instruct minus its FP8 block scales
    assert spec.total_params == 1_026_408_232_448


def test_minimax_m25_structure():
    spec = get_model("minimax-m2.5")
    assert spec.architecture == "minimax_m2" and not spec.is_mla
    assert spec.layer_groups == (LayerGroup(62, "full", "moe"),)
    assert (spec.num_heads, spec.num_kv_heads, spec.head_dim, spec.hidden_size) == (48, 8, 128, 3072)
    assert spec.kv_cache_elements_per_token_per_layer == 2 * 8 * 128
    assert (spec.num_experts, spec.experts_per_token, spec.num_shared_experts) == (256, 8, 0)
    assert spec.moe_intermediate_size == 1536 and spec.intermediate_size == 0
    assert spec.router_bias and spec.qk_norm and not spec.tie_word_embeddings
    assert spec.num_mtp_layers == 3 and spec.max_position_embeddings == 196608


def test_sliding_windows_in_catalog():
    assert get_model("mistral-7b").layer_groups == (LayerGroup(32, "sliding", "dense"),)
    assert get_model("mistral-7b").sliding_window == 4096
    # Qwen2.5 carries sliding_window=131072 but use_sliding_window=false; Mixtral's is null
    for name in ["qwen2.5-7b-instruct", "mixtral-8x7b", "qwen3-32b", "llama-3.1-8b"]:
        spec = get_model(name)
        assert spec.sliding_window == 0 and spec.num_sliding_layers == 0, name


def test_catalog_architecture_flags():
    assert get_model("qwen2.5-7b").qkv_bias and not get_model("qwen2.5-7b").o_bias
    assert get_model("qwen3-32b").qk_norm and get_model("qwen3-32b").head_dim == 128
    assert get_model("qwen3-235b-a22b").num_kv_heads == 4
    gpt3 = get_model("gpt3-175b")
    assert (gpt3.num_layers, gpt3.hidden_size, gpt3.num_heads, gpt3.intermediate_size) == (96, 12288, 96, 49152)
    assert gpt3.learned_pos_embeddings and gpt3.norm == "layernorm" and not gpt3.gated_mlp
    assert gpt3.max_position_embeddings == 2048 and gpt3.vocab_size == 50257
    assert get_model("llama-3.1-405b").num_kv_heads == 8


# ----------------------------------------------------------------------------------------------
# HF loader on hand-written configs: one per model_type, counts checked matrix by matrix
# ----------------------------------------------------------------------------------------------
def _norms(L, h, layernorm=False):
    per = 2 * h if layernorm else h
    return (2 * L + 1) * per


def test_llama_config_defaults_kv_heads_and_head_dim():
    cfg = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
           "intermediate_size": 128, "vocab_size": 100}
    spec = from_hf_config(cfg, name="tiny-llama")
    assert (spec.num_kv_heads, spec.head_dim, spec.max_position_embeddings) == (4, 16, 2048)
    attn = 4 * 64 * 64
    mlp = 3 * 64 * 128
    assert spec.total_params == 2 * 100 * 64 + 2 * (attn + mlp) + _norms(2, 64)
    assert spec.name == "tiny-llama" and spec.architecture == "llama"

    gqa = from_hf_config({**cfg, "num_key_value_heads": 2, "tie_word_embeddings": True,
                          "attention_bias": True, "max_position_embeddings": 8192})
    attn = 64 * 64 + 2 * 64 * 32 + 64 * 64 + (64 + 2 * 32) + 64  # q k v o + qkv bias + o bias
    assert gqa.total_params == 100 * 64 + 2 * (attn + mlp) + _norms(2, 64)
    assert gqa.max_position_embeddings == 8192 and gqa.name == "custom-llama"
    # null num_key_value_heads means multi-head attention too
    assert from_hf_config({**cfg, "num_key_value_heads": None}).num_kv_heads == 4


def test_mistral_sliding_window_variants():
    cfg = {"model_type": "mistral", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_hidden_layers": 3, "intermediate_size": 128, "vocab_size": 100, "sliding_window": 16}
    spec = from_hf_config(cfg)
    assert spec.sliding_window == 16 and spec.layer_groups == (LayerGroup(3, "sliding", "dense"),)
    assert from_hf_config({**cfg, "sliding_window": None}).sliding_window == 0
    no_key = dict(cfg)
    del no_key["sliding_window"]
    assert from_hf_config(no_key).sliding_window == 4096  # MistralConfig default


def test_mixtral_total_and_active():
    cfg = {"model_type": "mixtral", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_hidden_layers": 2, "intermediate_size": 96, "vocab_size": 100, "num_local_experts": 4,
           "num_experts_per_tok": 2, "sliding_window": None}
    spec = from_hf_config(cfg)
    attn = 64 * 64 * 2 + 2 * 64 * 32
    expert = 3 * 64 * 96
    router = 64 * 4
    base = 2 * 100 * 64 + _norms(2, 64) + 2 * (attn + router)
    assert spec.total_params == base + 2 * 4 * expert
    assert spec.active_params == base + 2 * 2 * expert
    assert spec.intermediate_size == 0 and spec.moe_intermediate_size == 96
    assert spec.layer_groups == (LayerGroup(2, "full", "moe"),)


def test_qwen2_bias_and_use_sliding_window():
    cfg = {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100, "sliding_window": 32,
           "use_sliding_window": False, "max_window_layers": 1, "tie_word_embeddings": True}
    spec = from_hf_config(cfg)
    assert spec.sliding_window == 0 and spec.qkv_bias and not spec.o_bias
    attn = 64 * 64 * 2 + 2 * 64 * 32 + (64 + 2 * 32)
    assert spec.total_params == 100 * 64 + _norms(2, 64) + 2 * (attn + 3 * 64 * 128)
    # with use_sliding_window the first max_window_layers layers stay full
    swa = from_hf_config({**cfg, "use_sliding_window": True})
    assert swa.sliding_window == 32 and swa.layer_types == ("full", "sliding")
    assert set(swa.layer_groups) == {LayerGroup(1, "full", "dense"), LayerGroup(1, "sliding", "dense")}


def test_qwen3_qk_norm_and_explicit_head_dim():
    cfg = {"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 32, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100,
           "sliding_window": None, "use_sliding_window": False}
    spec = from_hf_config(cfg)
    assert spec.head_dim == 32 and spec.qk_norm and not spec.qkv_bias
    attn = 64 * 128 + 2 * 64 * 64 + 128 * 64 + 2 * 32  # q(4x32) k v(2x32) o + q_norm/k_norm
    assert spec.total_params == 2 * 100 * 64 + _norms(2, 64) + 2 * (attn + 3 * 64 * 128)


def test_qwen3_moe_dense_prefix_and_rejected_patterns():
    cfg = {"model_type": "qwen3_moe", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "num_hidden_layers": 3, "intermediate_size": 128, "moe_intermediate_size": 32,
           "num_experts": 8, "num_experts_per_tok": 2, "vocab_size": 100, "mlp_only_layers": [],
           "decoder_sparse_step": 1}
    spec = from_hf_config(cfg)
    attn = 64 * 64 * 2 + 2 * 64 * 32 + 2 * 16
    expert, router = 3 * 64 * 32, 64 * 8
    base = 2 * 100 * 64 + _norms(3, 64) + 3 * (attn + router)
    assert spec.total_params == base + 3 * 8 * expert
    assert spec.active_params == base + 3 * 2 * expert
    dense_first = from_hf_config({**cfg, "mlp_only_layers": [0]})
    assert dense_first.layer_groups == (LayerGroup(1, "full", "dense"), LayerGroup(2, "full", "moe"))
    assert dense_first.intermediate_size == 128
    with pytest.raises(LlmsimError, match="mlp_only_layers"):
        from_hf_config({**cfg, "mlp_only_layers": [1]})
    with pytest.raises(LlmsimError, match="decoder_sparse_step"):
        from_hf_config({**cfg, "decoder_sparse_step": 2})


def _mla_attention(h, nh, q_lora, kv_lora, nope, rope, v):
    q = (h * q_lora + q_lora + q_lora * nh * (nope + rope)) if q_lora else h * nh * (nope + rope)
    return q + h * (kv_lora + rope) + kv_lora + kv_lora * nh * (nope + v) + nh * v * h


def test_deepseek_v2_lite_style_null_q_lora_rank():
    cfg = {"model_type": "deepseek_v2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
           "num_hidden_layers": 3, "intermediate_size": 160, "moe_intermediate_size": 16,
           "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 2, "first_k_dense_replace": 1,
           "q_lora_rank": None, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
           "v_head_dim": 16, "vocab_size": 100, "topk_method": "group_limited_greedy", "moe_layer_freq": 1}
    spec = from_hf_config(cfg)
    assert spec.q_lora_rank == 0 and spec.is_mla and not spec.router_bias and spec.num_mtp_layers == 0
    assert spec.kv_cache_elements_per_token_per_layer == 32 + 8
    attn = _mla_attention(64, 4, 0, 32, 16, 8, 16)
    expert = 3 * 64 * 16
    base = 2 * 100 * 64 + _norms(3, 64) + 3 * attn + 3 * 64 * 160 + 2 * (64 * 8 + 2 * expert)
    assert spec.total_params == base + 2 * 8 * expert
    assert spec.active_params == base + 2 * 2 * expert
    assert spec.layer_groups == (LayerGroup(1, "full", "dense"), LayerGroup(2, "full", "moe"))


def test_deepseek_v3_style_q_lora_router_bias_and_mtp():
    cfg = {"model_type": "deepseek_v3", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
           "num_hidden_layers": 2, "intermediate_size": 96, "moe_intermediate_size": 16,
           "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
           "q_lora_rank": 24, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
           "v_head_dim": 16, "vocab_size": 100, "topk_method": "noaux_tc", "num_nextn_predict_layers": 1}
    spec = from_hf_config(cfg)
    attn = _mla_attention(64, 4, 24, 32, 16, 8, 16)
    expert = 3 * 64 * 16
    base = 2 * 100 * 64 + _norms(2, 64) + 2 * attn + 3 * 64 * 96 + (64 * 8 + 8) + expert
    assert spec.total_params == base + 8 * expert
    assert spec.active_params == base + 2 * expert
    assert spec.num_mtp_layers == 1 and spec.router_bias and spec.q_lora_rank == 24


def _tiny_deepseek_v3():
    return {"model_type": "deepseek_v3", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
            "num_hidden_layers": 2, "intermediate_size": 96, "moe_intermediate_size": 16,
            "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
            "q_lora_rank": 24, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
            "v_head_dim": 16, "vocab_size": 100, "topk_method": "noaux_tc", "num_nextn_predict_layers": 0}


def test_kimi_k2_reads_as_deepseek_v3():
    cfg = _tiny_deepseek_v3()
    ref = from_hf_config(cfg)
    k2 = from_hf_config({**cfg, "model_type": "kimi_k2"})
    assert k2.architecture == "kimi_k2"
    assert k2.model_dump(exclude={"name", "architecture"}) == ref.model_dump(exclude={"name", "architecture"})


def test_kimi_k25_reads_its_text_config():
    text = {**_tiny_deepseek_v3(), "model_type": "kimi_k2"}
    ref = from_hf_config(text)
    wrapped = {"model_type": "kimi_k25", "architectures": ["KimiK25ForConditionalGeneration"],
               "text_config": text, "vision_config": {"vt_hidden_size": 8, "vt_num_hidden_layers": 1}}
    spec = from_hf_config(wrapped, name="tiny-kimi")
    assert spec.architecture == "kimi_k25"
    assert spec.total_params == ref.total_params and spec.active_params == ref.active_params  # vision ignored
    assert spec.layer_groups == ref.layer_groups and spec.kv_cache_elements_per_token_per_layer == 32 + 8
    # a text_config saved by transformers names itself deepseek_v3
    assert from_hf_config({**wrapped, "text_config": {**text, "model_type": "deepseek_v3"}}).total_params == ref.total_params
    with pytest.raises(LlmsimError, match="text_config"):
        from_hf_config({"model_type": "kimi_k25"})
    with pytest.raises(LlmsimError, match="'llama'"):
        from_hf_config({**wrapped, "text_config": {**text, "model_type": "llama"}})
    with pytest.raises(LlmsimError) as e:  # errors inside text_config name it
        from_hf_config({**wrapped, "text_config": {k: v for k, v in text.items() if k != "kv_lora_rank"}})
    assert "'kv_lora_rank'" in e.value.message and "text_config" in e.value.message


def test_minimax_m2_counts_and_rejections():
    cfg = {"model_type": "minimax_m2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 32, "num_hidden_layers": 2, "intermediate_size": 48, "num_local_experts": 4,
           "num_experts_per_tok": 2, "vocab_size": 100, "attn_type_list": [1, 1], "rotary_dim": 16,
           "use_qk_norm": True, "qk_norm_type": "per_layer", "use_routing_bias": True,
           "shared_intermediate_size": 0, "use_mtp": True, "num_mtp_modules": 3, "tie_word_embeddings": False}
    spec = from_hf_config(cfg)
    # q (4x32) k v (2x32) o, + ModelSpec's 2 x head_dim QK-norm (the checkpoint's per-layer norms have (4+2) x 32)
    attn = 64 * 128 + 2 * 64 * 64 + 128 * 64 + 2 * 32
    expert, router = 3 * 64 * 48, 64 * 4 + 4  # + e_score_correction_bias
    base = 2 * 100 * 64 + _norms(2, 64) + 2 * (attn + router)
    assert spec.total_params == base + 2 * 4 * expert
    assert spec.active_params == base + 2 * 2 * expert
    assert spec.intermediate_size == 0 and spec.moe_intermediate_size == 48 and spec.num_shared_experts == 0
    assert spec.layer_groups == (LayerGroup(2, "full", "moe"),) and spec.num_mtp_layers == 3
    assert spec.kv_cache_elements_per_token_per_layer == 2 * 2 * 32
    # transformers' MiniMaxM2Config defaults: head_dim 128, 8 KV heads, 256 experts top-8
    bare = {k: v for k, v in cfg.items()
            if k not in ("head_dim", "num_key_value_heads", "num_local_experts", "num_experts_per_tok")}
    d = from_hf_config({**bare, "num_attention_heads": 8})
    assert (d.head_dim, d.num_kv_heads, d.num_experts, d.experts_per_token) == (128, 8, 256, 8)
    assert from_hf_config({**cfg, "use_mtp": False}).num_mtp_layers == 0
    with pytest.raises(LlmsimError, match="lightning"):
        from_hf_config({**cfg, "attn_type_list": [0, 1]})
    with pytest.raises(LlmsimError, match="attn_type_list"):
        from_hf_config({**cfg, "attn_type_list": [1]})
    with pytest.raises(LlmsimError, match="shared experts"):
        from_hf_config({**cfg, "shared_intermediate_size": 64})
    with pytest.raises(LlmsimError, match="sliding_window"):
        from_hf_config({**cfg, "sliding_window": 4096})


def test_gpt_oss_biases_sinks_and_layer_types():
    cfg = {"model_type": "gpt_oss", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 8, "num_hidden_layers": 4, "intermediate_size": 32, "num_local_experts": 4,
           "experts_per_token": 2, "vocab_size": 100, "sliding_window": 16, "attention_bias": True,
           "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]}
    spec = from_hf_config(cfg)  # experts_per_token alone (no num_experts_per_tok) is accepted
    assert spec.experts_per_token == 2 and spec.layer_types == ("sliding", "full") * 2
    attn = 64 * 32 + 2 * 64 * 16 + 32 * 64 + (32 + 2 * 16) + 64 + 4  # + qkv bias, o bias, sinks
    expert = 3 * 64 * 32 + 2 * 32 + 64
    router = 64 * 4 + 4
    base = 2 * 100 * 64 + _norms(4, 64) + 4 * (attn + router)
    assert spec.total_params == base + 4 * 4 * expert
    assert spec.active_params == base + 4 * 2 * expert
    # without layer_types: GptOssConfig's default alternation, sliding first
    no_types = {k: v for k, v in cfg.items() if k != "layer_types"}
    assert from_hf_config(no_types).layer_types == ("sliding", "full") * 2


def test_gpt2_defaults():
    cfg = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128,
           "vocab_size": 100, "n_inner": None}
    spec = from_hf_config(cfg)
    assert spec.intermediate_size == 256 and spec.tie_word_embeddings and spec.learned_pos_embeddings
    attn = 4 * 64 * 64 + 3 * 64 + 64
    mlp = 2 * 64 * 256 + 256 + 64
    assert spec.total_params == 100 * 64 + 128 * 64 + 2 * (attn + mlp) + _norms(2, 64, layernorm=True)
    assert from_hf_config({**cfg, "n_inner": 100}).intermediate_size == 100


def test_opt_config_and_unsupported_projection():
    cfg = {"model_type": "opt", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
           "ffn_dim": 256, "vocab_size": 100, "max_position_embeddings": 128, "word_embed_proj_dim": 64,
           "activation_function": "relu"}
    spec = from_hf_config(cfg)
    assert spec.activation == "relu" and spec.norm == "layernorm" and spec.tie_word_embeddings
    attn = 4 * 64 * 64 + 3 * 64 + 64
    mlp = 2 * 64 * 256 + 256 + 64
    # the +2 fairseq position offset rows are not counted (documented in hf.py)
    assert spec.total_params == 100 * 64 + 128 * 64 + 2 * (attn + mlp) + _norms(2, 64, layernorm=True)
    with pytest.raises(LlmsimError, match="word_embed_proj_dim"):
        from_hf_config({**cfg, "word_embed_proj_dim": 32})


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
def test_unknown_model_type_lists_supported():
    with pytest.raises(LlmsimError) as e:
        from_hf_config({"model_type": "mamba", "hidden_size": 8})
    assert "'mamba'" in e.value.message
    for t in ["llama", "qwen3_moe", "deepseek_v3", "kimi_k2", "kimi_k25", "minimax_m2", "gpt_oss", "gpt2", "opt"]:
        assert t in e.value.hint


def test_missing_model_type():
    with pytest.raises(LlmsimError, match="model_type"):
        from_hf_config({"hidden_size": 8})


def test_missing_required_key_names_key_and_file(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
           "vocab_size": 100}  # no intermediate_size
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    with pytest.raises(LlmsimError) as e:
        load_hf_config_file(f)
    assert "'intermediate_size'" in e.value.message and str(f) in e.value.message
    with pytest.raises(LlmsimError, match="'vocab_size'"):
        from_hf_config({k: v for k, v in cfg.items() if k != "vocab_size"} | {"intermediate_size": 8})


def test_wrong_value_type_is_reported():
    cfg = {"model_type": "llama", "hidden_size": "big", "num_attention_heads": 4, "num_hidden_layers": 2,
           "intermediate_size": 8, "vocab_size": 100}
    with pytest.raises(LlmsimError, match="hidden_size"):
        from_hf_config(cfg)


def test_malformed_json_file(tmp_path):
    f = tmp_path / "config.json"
    f.write_text('{"model_type": "llama", "hidden_size": 64,,}')
    with pytest.raises(LlmsimError) as e:
        load_hf_config_file(f)
    assert str(f) in e.value.message and "not valid JSON" in e.value.message and "line 1" in e.value.message
    with pytest.raises(LlmsimError, match="not valid JSON"):
        get_model(str(f))


def test_json_that_is_not_an_object(tmp_path):
    f = tmp_path / "config.json"
    f.write_text("[1, 2]")
    with pytest.raises(LlmsimError, match="JSON object"):
        load_hf_config_file(f)


def test_directory_without_config_json(tmp_path):
    with pytest.raises(LlmsimError, match="no config.json"):
        load_hf_config_file(tmp_path)
    with pytest.raises(LlmsimError, match="no config.json"):
        get_model(str(tmp_path))


# ----------------------------------------------------------------------------------------------
# loading user files
# ----------------------------------------------------------------------------------------------
def test_load_config_from_directory_and_file(tmp_path):
    d = tmp_path / "My-Model"
    d.mkdir()
    cfg = json.loads((DATA_DIR / "llama-3.1-8b.json").read_text())["config"]
    (d / "config.json").write_text(json.dumps(cfg))
    by_dir = get_model(str(d))
    by_file = get_model(str(d / "config.json"))
    assert by_dir.name == "my-model" and by_dir.source.endswith("config.json")
    assert by_dir.total_params == by_file.total_params == get_model("llama-3.1-8b").total_params
    assert load_hf_config_file(d).total_params == by_dir.total_params


def test_edited_config_file_is_reloaded(tmp_path):
    f = tmp_path / "config.json"
    cfg = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
           "intermediate_size": 128, "vocab_size": 100}
    f.write_text(json.dumps(cfg))
    first = get_model(str(f))
    f.write_text(json.dumps({**cfg, "num_hidden_layers": 3}) + "\n")
    assert get_model(str(f)).num_layers == 3 and first.num_layers == 2


@pytest.mark.parametrize("path", sorted(DATA_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_catalog_configs_load_as_user_files(tmp_path, path):
    """Each catalog config, saved as a plain config.json, loads to the same architecture."""
    entry = json.loads(path.read_text())
    (tmp_path / "config.json").write_text(json.dumps(entry["config"]))
    spec = load_hf_config_file(tmp_path)
    ref = get_model(entry["name"])
    assert spec.total_params == ref.total_params and spec.active_params == ref.active_params
    assert spec.layer_groups == ref.layer_groups


def test_native_quantisation_from_quantization_config():
    cfg = {"model_type": "gpt_oss", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 8, "num_hidden_layers": 2, "intermediate_size": 32, "num_local_experts": 4,
           "experts_per_token": 2, "vocab_size": 100, "sliding_window": 16}
    bare = from_hf_config(cfg)  # no quantization_config: nothing kept apart
    assert (bare.native_weight_dtype, bare.native_unquantized) == ("", ())
    assert not bare.bf16_part("attention", "fp4")
    q = {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "lm_head"]}
    spec = from_hf_config({**cfg, "quantization_config": q})
    assert (spec.native_weight_dtype, spec.native_unquantized) == ("fp4", ("attention",))
    # the exclusions belong to the published format: another format is another checkpoint
    assert spec.bf16_part("attention", "fp4") and not spec.bf16_part("attention", "fp8")
    only_head = {"quant_method": "fp8", "modules_to_not_convert": ["lm_head"]}
    assert from_hf_config({**cfg, "quantization_config": only_head}).native_unquantized == ()
    # compressed-tensors W4A16 with an ignore list (Kimi-K2-Thinking / K2.5 style), inside text_config too
    ct = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int"}}},
          "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]}
    ds = {"model_type": "deepseek_v3", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
          "num_hidden_layers": 2, "intermediate_size": 32, "vocab_size": 100, "q_lora_rank": 16, "kv_lora_rank": 16,
          "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8, "n_routed_experts": 4,
          "num_experts_per_tok": 2, "moe_intermediate_size": 16, "n_shared_experts": 1, "first_k_dense_replace": 1}
    k = from_hf_config({**ds, "quantization_config": ct})
    assert (k.native_weight_dtype, k.native_unquantized) == ("int4", ("attention", "shared_experts", "dense_mlp"))
    wrapped = from_hf_config({"model_type": "kimi_k25", "text_config": {**ds, "model_type": "kimi_k2", "quantization_config": ct}})
    assert wrapped.native_unquantized == k.native_unquantized
    # the catalog carries the published configs: gpt-oss (MXFP4, bf16 attention), Kimi-K2.5 (INT4 routed experts)
    assert get_model("gpt-oss-120b").bf16_part("attention", "fp4") and get_model("gpt-oss-20b").bf16_part("attention", "fp4")
    kimi = get_model("kimi-k2.5")
    assert all(kimi.bf16_part(p, "int4") for p in ("attention", "shared_experts", "dense_mlp"))
    # NVFP4 is NVIDIA's re-quantisation, a different checkpoint with its own exclusions (catalog facts):
    # it keeps self-attention in bf16 but quantises the shared expert and the dense MLP
    assert kimi.bf16_part("attention_qkv", "fp4") and kimi.bf16_part("attention_out", "fp4")
    assert not kimi.bf16_part("shared_experts", "fp4") and not kimi.bf16_part("dense_mlp", "fp4")
    assert not get_model("deepseek-v3").bf16_part("attention", "fp8")


def test_block_scaled_fp8_checkpoint_from_weight_block_size():
    cfg = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100}
    block = from_hf_config({**cfg, "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}})
    assert (block.native_weight_dtype, block.native_weight_block_size) == ("fp8", (128, 128))
    assert block.block_scaled("fp8") and block.block_scaled("float8") and not block.block_scaled("fp4")
    per_tensor = from_hf_config({**cfg, "quantization_config": {"quant_method": "fp8", "activation_scheme": "static"}})
    assert per_tensor.native_weight_block_size is None and not per_tensor.block_scaled("fp8")
    assert not from_hf_config(cfg).block_scaled("fp8")  # a bf16 release served at fp8: per-tensor by default
    ct = {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {
        "num_bits": 8, "type": "float", "strategy": "block", "block_structure": [128, 128]}}}}
    assert from_hf_config({**cfg, "quantization_config": ct}).block_scaled("fp8")
    bad = from_hf_config({**cfg, "quantization_config": {"quant_method": "fp8", "weight_block_size": "128"}})
    assert bad.native_weight_block_size is None  # malformed block sizes are ignored, not guessed
    # the catalog carries the published 128x128-block FP8 releases
    for name in ("deepseek-v3", "deepseek-r1", "minimax-m2.5"):
        assert get_model(name).block_scaled("fp8"), name
    assert not get_model("llama-3.1-70b").block_scaled("fp8") and not get_model("kimi-k2.5").block_scaled("fp8")


def test_checkpoint_unquantized_is_per_served_format():
    # NVIDIA's DeepSeek-R1-0528-FP4-v2 quantises o_proj but keeps the q / kv projections in bf16;
    # the native fp8 checkpoint is quantised throughout; other formats follow no recorded checkpoint
    ds = get_model("deepseek-v3")
    assert dict(ds.checkpoint_unquantized) == {"fp4": ("attention_qkv",)}
    assert ds.bf16_part("attention_qkv", "fp4") and not ds.bf16_part("attention_out", "fp4")
    assert not ds.bf16_part("attention_qkv", "fp8") and not ds.bf16_part("attention_qkv", "int4")
    assert not ds.bf16_part("shared_experts", "fp4")
    mm = get_model("minimax-m2.5")  # nvidia/MiniMax-M2.5-NVFP4: all of self-attention unquantised
    assert mm.bf16_part("attention_qkv", "fp4") and mm.bf16_part("attention_out", "fp4")
    assert not mm.bf16_part("attention_qkv", "fp8")
    # the split of attention parameters the memory model uses
    assert 0 < ds.attention_out_params() < ds.attention_params()
    assert ds.attention_out_params() == ds.num_heads * ds.v_head_dim * ds.hidden_size


def test_catalog_rejects_a_bad_checkpoint_unquantized(tmp_path, monkeypatch):
    import llmsim.models.catalog as cat

    raw = json.loads((DATA_DIR / "deepseek-v3.json").read_text())
    for bad in ({"fp4": ["attention_everything"]}, ["attention"], {"fp4": "attention"}):
        (tmp_path / "deepseek-v3.json").write_text(json.dumps({**raw, "checkpoint_unquantized": bad}))
        with pytest.raises(LlmsimError, match="checkpoint_unquantized"):
            cat._load_entry(tmp_path / "deepseek-v3.json")


def test_exclusion_list_naming_only_qkv_projections_keeps_o_proj_quantised():
    # ModelOpt's DeepSeek-R1-0528-FP4-v2 style: the MLA q / kv projections excluded, o_proj quantised
    ds = _tiny_deepseek_v3()
    names = ["lm_head"] + [f"model.layers.*.self_attn.{p}" for p in ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj")]
    q = {"quant_method": "modelopt", "quant_algo": "NVFP4", "exclude_modules": names}
    spec = from_hf_config({**ds, "quantization_config": q})
    assert (spec.native_weight_dtype, spec.native_unquantized) == ("fp4", ("attention_qkv",))
    assert spec.bf16_part("attention_qkv", "fp4") and not spec.bf16_part("attention_out", "fp4")
    whole = from_hf_config({**ds, "quantization_config": {**q, "exclude_modules": ["model.layers.*.self_attn*"]}})
    assert whole.native_unquantized == ("attention",) and whole.bf16_part("attention_out", "fp4")
    out_only = from_hf_config({**ds, "quantization_config": {**q, "exclude_modules": ["model.layers.*.self_attn.o_proj"]}})
    assert out_only.native_unquantized == ("attention_out",) and not out_only.bf16_part("attention_qkv", "fp4")


# ----------------------------------------------------------------------------------------------
# out-of-range integers in a config.json
# ----------------------------------------------------------------------------------------------
_TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
               "intermediate_size": 128, "vocab_size": 100}
_TINY_GPT2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100}
_TINY_OPT = {"model_type": "opt", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
             "ffn_dim": 256, "vocab_size": 100}


@pytest.mark.parametrize(
    "base,key,value",
    [
        (_TINY_LLAMA, "num_attention_heads", 0),  # was ZeroDivisionError (hidden % heads)
        (_TINY_LLAMA, "num_attention_heads", -4),
        (_TINY_LLAMA, "hidden_size", float("inf")),  # was OverflowError in int()
        (_TINY_LLAMA, "hidden_size", float("nan")),  # was ValueError in int()
        (_TINY_LLAMA, "hidden_size", 0),
        (_TINY_LLAMA, "head_dim", 0),  # was silently replaced by hidden / heads
        (_TINY_LLAMA, "head_dim", -16),
        (_TINY_LLAMA, "num_key_value_heads", 0),
        (_TINY_LLAMA, "num_hidden_layers", 0),
        (_TINY_LLAMA, "vocab_size", float("inf")),
        (_TINY_LLAMA, "intermediate_size", -5),
        (_TINY_LLAMA, "max_position_embeddings", 0),
        (_TINY_GPT2, "n_head", 0),  # was ZeroDivisionError (n_embd % n_head)
        (_TINY_GPT2, "n_embd", float("inf")),
        (_TINY_OPT, "num_attention_heads", 0),  # was ZeroDivisionError
    ],
    ids=lambda x: x["model_type"] if isinstance(x, dict) else str(x),
)
def test_bad_config_integers_name_the_key(tmp_path, base, key, value):
    """Zero / negative / non-finite sizes are an LlmsimError naming the key, not a traceback
    (written to a file: Python's json reads and writes Infinity / NaN)."""
    f = tmp_path / "config.json"
    f.write_text(json.dumps({**base, key: value}))
    with pytest.raises(LlmsimError) as e:
        load_hf_config_file(f)
    assert f"'{key}'" in e.value.message and str(f) in e.value.message
    with pytest.raises(LlmsimError, match=f"'{key}'"):
        from_hf_config({**base, key: value})


def test_absent_or_null_head_dim_is_derived():
    """Only an explicit 0 is an error: absent or null head_dim still means hidden / heads."""
    assert from_hf_config(_TINY_LLAMA).head_dim == 16
    assert from_hf_config({**_TINY_LLAMA, "head_dim": None}).head_dim == 16
    assert from_hf_config({**_TINY_LLAMA, "head_dim": 32}).head_dim == 32


def _llama_like_cfg(model_type: str, **extra) -> dict:
    cfg = {"model_type": model_type, "hidden_size": 5120, "num_attention_heads": 64, "num_hidden_layers": 64,
           "intermediate_size": 25600, "vocab_size": 151936, "max_position_embeddings": 40960, **extra}
    return {k: v for k, v in cfg.items() if v is not None}


def test_missing_keys_take_the_transformers_defaults_of_the_model_type():
    # Qwen3Config: head_dim 128, num_key_value_heads 32, sliding_window 4096 / max_window_layers 28
    # (with use_sliding_window); MistralConfig / MixtralConfig: 8 KV heads; Qwen3MoeConfig: 4
    q = from_hf_config(_llama_like_cfg("qwen3", num_key_value_heads=8))
    assert q.head_dim == 128  # not hidden / heads = 80
    assert from_hf_config(_llama_like_cfg("qwen3", head_dim=128)).num_kv_heads == 32
    sw = from_hf_config(_llama_like_cfg("qwen3", num_key_value_heads=8, use_sliding_window=True))
    assert sw.sliding_window == 4096 and sw.layer_types.count("full") == 28
    mis = from_hf_config({"model_type": "mistral", "hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
                          "intermediate_size": 14336, "vocab_size": 32000})
    assert mis.num_kv_heads == 8 and mis.total_params == pytest.approx(7.24e9, rel=0.01)
    # an explicit null keeps transformers' "null = multi-head attention"
    assert from_hf_config(_llama_like_cfg("qwen3", num_key_value_heads=None, head_dim=128) | {"num_key_value_heads": None}).num_kv_heads == 64


def test_deepseek_kv_lora_rank_zero_is_refused_not_read_as_multi_head_attention():
    cfg = json.loads((DATA_DIR / "deepseek-v3.json").read_text()) if (DATA_DIR / "deepseek-v3.json").is_file() else None
    if cfg is None:
        pytest.skip("catalog stores DeepSeek-V3 in another form")
    cfg = dict(cfg.get("config", cfg), kv_lora_rank=0)
    with pytest.raises(LlmsimError, match="'kv_lora_rank' must be greater than 0"):
        from_hf_config(cfg)


def test_spec_validation_errors_are_messages_not_pydantic_dumps(tmp_path):
    f = tmp_path / "config.json"
    f.write_text(json.dumps(_llama_like_cfg("llama", num_key_value_heads=5)))
    with pytest.raises(LlmsimError) as e:
        load_hf_config_file(f)
    assert "num_heads=64 is not a multiple of num_kv_heads=5" in e.value.message
    assert "errors.pydantic.dev" not in e.value.message and "input_value" not in e.value.message


def test_rope_scaling_yarn_extends_the_context_as_model_cards_say():
    # Qwen3's card: rope_scaling yarn, factor 4 over 32,768 original positions = 131,072 tokens
    base = _llama_like_cfg("qwen3", num_key_value_heads=8)
    assert from_hf_config(base).max_position_embeddings == 40960
    yarn = from_hf_config(base | {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}})
    assert yarn.max_position_embeddings == 131072
    # Llama 3's own scaling is already in its max_position_embeddings
    llama3 = from_hf_config(base | {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}})
    assert llama3.max_position_embeddings == 40960
    for bad in ("yarn", {"rope_type": "yarn", "factor": 0.5}):
        with pytest.raises(LlmsimError, match="rope_scaling"):
            from_hf_config(base | {"rope_scaling": bad})
