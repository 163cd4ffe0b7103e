"""Memory per GPU of training: model states under each ZeRO stage, activations, overhead.

Model states (mixed-precision Adam, Rajbhandari et al. 2020 "ZeRO", bytes per parameter):
weights 2 (bf16), gradients g = 2 (bf16) or 4 (``fp32_grads=True``), optimizer 12 (fp32 master
weights, Adam m and v). With N_d = the GPUs holding the same weights (dp*cp for dense weights,
expert-DP = tp*cp*dp/ep for expert weights):

    zero 0   (2 + g + 12) P
    zero 1   (2 + g) P + 12 P / N_d
    zero 2   2 P + (g + 12) P / N_d
    zero 3   (2 + g + 12) P / N_d  + two layers of gathered bf16 weights (prefetch buffer)

P = parameters of the busiest pipeline stage on this GPU (split by tp, experts by ep).
LoRA fine-tuning: frozen base weights 2 B/param, only the adapters (rank r on every linear
layer) carry gradients and optimizer states.

Activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", eq. 1-2 and Table 2), bytes of one layer for one micro-batch of b sequences of s tokens
(s = seq_len / cp with context parallelism), a heads, tensor parallel t:

    no recompute, sequence parallel     s b h (34 + 5 a s / h) / t
    no recompute, no SP                 s b h (10 + 24/t + 5 a s / (h t))
    selective recompute                 drops the 5 a s / h term (the attention scores)
    full recompute                      2 s b h (/ t with SP): only the layer input is kept

The 34 generalises term by term to GQA / SwiGLU / MoE layers: norms 4h, QKV input 2h, Q,K,V
2(a d_qk + 2 g d)/t ... (see `act_bytes_per_token_layer`); with FlashAttention the score term
is never stored (the kernel recomputes it in the backward pass). The first pipeline stage holds
`schedule.inflight_microbatches` micro-batches of its layers; full recompute adds one layer's
full activations while it is recomputed; the last stage adds fp32 logits (s b V / t * 4).

Total = model states + activations * (1 + fragmentation) + runtime overhead (CUDA context, NCCL
and communication buffers; a parameter).
"""

from __future__ import annotations

import numpy as np

from .flops import Geometry
from .schedule import heaviest_layers_sum, inflight_microbatches, layers_per_stage

OPT_BYTES = 12.0  # fp32 master + Adam m + v
W_BYTES = 2.0


def stage_params(geo: Geometry, L, uneven: bool):
    """(dense-group params, expert params, embedding/head params) on one GPU of the busiest stage."""
    n_layers = layers_per_stage(geo.L, L.pp, L.vpp, uneven)
    dense_k, expert_k, tot_k = [], [], []
    for kind in geo.kinds:
        d, e = geo.layer_params_local(kind, L.tp, L.ep)
        dense_k.append(d + 0.0 * L.tp)
        expert_k.append(e + 0.0 * L.tp)
        tot_k.append(d + e + 0.0 * L.tp)
    counts = [k.count for k in geo.kinds]
    tot = heaviest_layers_sum(np.stack(tot_k), counts, n_layers)
    exp_ = heaviest_layers_sum(np.stack(expert_k), counts, n_layers) if geo.E else 0.0 * L.tp
    dense = tot - exp_
    tp = L.tp.astype(float)
    emb = geo.embed_params / tp  # vocab-parallel word embedding (position embeddings counted here too)
    head = geo.V * geo.h / tp + geo.final_norm_params  # LM head on the last stage (a copy when tied and pp > 1)
    first_last = np.where(L.pp == 1, emb + np.where(geo.tied, 0.0, head), np.maximum(emb, head))
    return dense + first_last, exp_, first_last


def model_state_bytes(geo: Geometry, L, ctx: dict):
    """dict of arrays: weights, gradients, optimizer, zero3 buffer (bytes on one GPU)."""
    dense, expert, _ = stage_params(geo, L, ctx.get("uneven_layers", False))
    g = 4.0 if ctx.get("fp32_grads") else 2.0
    nd = (L.dp * L.cp).astype(float)
    ned = np.maximum(1.0, (L.tp * L.cp * L.dp / np.maximum(L.ep, 1)).astype(float))
    z = L.zero
    if ctx.get("finetune") == "lora":
        r = float(ctx.get("lora_rank", 16))
        n_layers = layers_per_stage(geo.L, L.pp, L.vpp, ctx.get("uneven_layers", False))
        adapters = n_layers * lora_params_per_layer(geo, L.tp, r)
        shard = np.where(z >= 1, nd, 1.0)
        weights = W_BYTES * (dense + expert) + W_BYTES * adapters
        grads = g * adapters / np.where(z >= 2, nd, 1.0)
        opt = OPT_BYTES * adapters / shard
        return {"weights": weights, "gradients": grads, "optimizer": opt, "zero3_buffer": 0.0 * weights}

    def per(p, n):
        w = W_BYTES * p / np.where(z >= 3, n, 1.0)
        gr = g * p / np.where(z >= 2, n, 1.0)
        op = OPT_BYTES * p / np.where(z >= 1, n, 1.0)
        return w, gr, op

    wd, gd, od = per(dense, nd)
    we, ge, oe = per(expert, ned)
    # zero-3: the gathered (tp-local) weights of the layer being computed and the prefetched next one
    n_layers = layers_per_stage(geo.L, L.pp, L.vpp, ctx.get("uneven_layers", False))
    per_layer = (dense + expert) / np.maximum(n_layers, 1)
    buf = np.where(z >= 3, 2.0 * W_BYTES * per_layer, 0.0)
    return {"weights": wd + we, "gradients": gd + ge, "optimizer": od + oe, "zero3_buffer": buf}


def lora_params_per_layer(geo: Geometry, tp, r: float):
    """Adapter parameters of one layer on one GPU: r (n + k) per linear layer (attention + MLP)."""
    tp = np.asarray(tp, float)
    tot = 0.0 * tp
    for _, n, k, split in geo.attn_gemms(tp.astype(np.int64)):
        tot = tot + r * (np.asarray(n, float) + np.asarray(k, float))
    width = (geo.f or geo.f_shared or geo.f_e) / tp
    for _, n, k in geo.mlp_gemms(width):
        tot = tot + r * (n + k)
    return tot


def act_bytes_per_token_layer(geo: Geometry, kind_moe: bool, tp, s_local, sp: bool, flash: bool, rc, ep=None):
    """Activation bytes one token leaves in one layer on one GPU (Korthikanti et al. 2022, generalised).

    rc: 0 none, 1 selective, 2 full recompute. Returns an array over layouts."""
    tp = np.asarray(tp, float)
    h = geo.h
    drop = 1.0 if geo.dropout else 0.0
    nh = geo.nh / tp
    g = np.maximum(1.0, geo.nkv / tp) if not geo.mla else nh
    # tensors in the tensor-parallel regions (split by tp already through nh / g / widths)
    qkv = 2.0 * (nh * geo.d_qk + g * geo.d_qk + g * geo.d_v) if not geo.mla else 2.0 * nh * (2 * geo.d_qk + geo.d_v)
    attn_out = 2.0 * nh * geo.d_v  # input of the output projection
    split = qkv + attn_out
    if kind_moe:
        f_loc = geo.f_shared / tp
        up = (3.0 if geo.gated else 2.0) * 2.0 * f_loc  # act input (2f or f) + act output (f), 2 B each
        split = split + (up if geo.f_shared else 0.0)
        # routed experts: tokens are sequence-sharded over tp and each goes to top_k experts
        routed = geo.top_k * (2.0 * h + (3.0 if geo.gated else 2.0) * 2.0 * geo.f_e) / tp
        split = split + routed + 4.0 * geo.E / tp  # router logits / probabilities (fp32)
    else:
        f_loc = geo.f / tp
        split = split + (3.0 if geo.gated else 2.0) * 2.0 * f_loc
    # regions replicated over tp without sequence parallelism: 2 norm inputs, QKV and MLP inputs, dropout masks
    rep = (4.0 * h + 2.0 * h + 2.0 * h + 2.0 * drop * h) / np.where(sp, tp, 1.0)
    full = split + rep
    # attention scores (softmax output 2, dropout mask 1, dropout output 2 bytes per score) without FlashAttention
    scores = (5.0 if geo.dropout else 2.0) * nh * s_local
    keep_scores = (rc == 0) & (not flash)
    full = full + np.where(keep_scores, scores, 0.0)
    layer_input = 2.0 * h / np.where(sp, tp, 1.0)
    return np.where(rc == 2, layer_input, full), full


def activation_bytes(geo: Geometry, L, ctx: dict, m):
    """Peak activation bytes on one GPU (first stage, or last stage with the logits), one array."""
    s_local = ctx["seq_len"] / L.cp.astype(float)
    tokens_mb = L.mb * s_local  # tokens of one micro-batch on this GPU (before the SP split)
    sp = bool(ctx.get("sequence_parallel", True)) & (L.tp > 1)
    flash = bool(ctx.get("flash_attention", True))
    n_layers = layers_per_stage(geo.L, L.pp, L.vpp, ctx.get("uneven_layers", False))
    kept_k, full_k = [], []
    for kind in geo.kinds:
        kept, full = act_bytes_per_token_layer(geo, kind.moe, L.tp, s_local, sp, flash, L.rc)
        kept_k.append(kept + 0.0 * L.tp)
        full_k.append(full + 0.0 * L.tp)
    counts = [k.count for k in geo.kinds]
    per_mb_stage = heaviest_layers_sum(np.stack(kept_k), counts, n_layers) * tokens_mb
    inflight = inflight_microbatches(L.pp, L.vpp, m)
    acts = per_mb_stage * inflight
    # full recompute: one layer's full activations exist while it is recomputed for its backward
    recompute_peak = np.where(L.rc == 2, np.max(np.stack(full_k), axis=0) * tokens_mb, 0.0)
    logits = tokens_mb * geo.V / L.tp * 4.0 * 2.0  # fp32 logits and their gradient (vocab-parallel cross-entropy)
    last_stage = per_mb_stage * 1.0 + logits
    first = acts + recompute_peak
    return np.where(L.pp == 1, first + logits, np.maximum(first, last_stage + recompute_peak))
