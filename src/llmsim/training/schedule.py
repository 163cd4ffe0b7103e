"""Pipeline schedule: layers per stage, micro-batches, bubble and in-flight activations.

With ``m`` micro-batches per step on each data-parallel replica (gradient accumulation,
``m = global_batch / (micro_batch * dp)``), ``pp`` stages and ``vpp`` virtual stages per GPU:

    1F1B (vpp = 1)          bubble = (pp - 1) / m of the ideal time m * t_mb
    interleaved (vpp > 1)   bubble = (pp - 1) / (vpp * m)                   (Narayanan et al. 2021, §2.2)

where t_mb is the forward + backward time of one micro-batch through one full stage.

Activations in flight on the first stage, in units of one micro-batch through one full
stage (Korthikanti et al. 2022, §4.2.3 / Narayanan et al. 2021):

    1F1B                    min(pp, m)
    interleaved             pp * (1 + (pp - 1) / (pp * vpp))     (capped at m * ... when m < pp)
    no pipeline             1  (gradient accumulation runs one micro-batch at a time)
"""

from __future__ import annotations

import numpy as np


def layers_per_stage(num_layers: int, pp, vpp, uneven: bool):
    """Layers the busiest GPU holds: L/pp, or vpp * ceil(L/(pp*vpp)) with uneven chunks."""
    pp = np.asarray(pp)
    vpp = np.asarray(vpp)
    if uneven:
        return vpp * -(-num_layers // (pp * vpp))
    return num_layers // pp


def bubble_fraction(pp, vpp, m):
    """Pipeline bubble as a fraction of the ideal (bubble-free) step time."""
    pp = np.asarray(pp, float)
    return (pp - 1.0) / (np.asarray(vpp, float) * np.maximum(np.asarray(m, float), 1.0))


def inflight_microbatches(pp, vpp, m):
    """Micro-batches' worth of one full stage's activations held by the first stage at its peak."""
    pp = np.asarray(pp, float)
    vpp = np.asarray(vpp, float)
    m = np.asarray(m, float)
    inter = pp * (1.0 + (pp - 1.0) / (pp * vpp))
    base = np.where(vpp > 1, inter, pp)
    return np.maximum(1.0, np.minimum(base, np.maximum(m, 1.0) * np.where(vpp > 1, 1.0 + (pp - 1.0) / (pp * vpp), 1.0)))


def heaviest_layers_counts(per_kind, counts, n):
    """Layers of each kind on the busiest stage: the n most expensive layers (per_kind values).

    per_kind: (K, N) per-layer value of each layer kind for N layouts; counts: the K kinds'
    layer counts in the model; n: (N,) layers on the stage. Returns (K, N) layer counts.
    Putting the most expensive layers on one stage is an upper bound for mixed models (e.g.
    dense-then-MoE layers) and exact for uniform ones."""
    per_kind = np.asarray(per_kind, float)
    K, N = per_kind.shape
    n = np.asarray(n, float) + np.zeros(N)
    if K == 1:
        return np.minimum(n, counts[0])[None, :]
    order = np.argsort(-per_kind, axis=0, kind="stable")
    cnt = np.asarray(counts, float)[order]
    out = np.zeros((K, N))
    left = n.copy()
    for j in range(K):
        take = np.minimum(left, cnt[j])
        np.put_along_axis(out, order[j:j + 1], take[None, :], axis=0)
        left = left - take
    return out


def heaviest_layers_sum(per_kind, counts, n):
    """Sum of per_kind over the busiest stage's layers (see `heaviest_layers_counts`)."""
    per_kind = np.asarray(per_kind, float)
    return (heaviest_layers_counts(per_kind, counts, n) * per_kind).sum(axis=0)
