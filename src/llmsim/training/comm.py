"""Collectives of a training step, on the link tier their placement implies.

Every collective time comes from `llmsim.cost.roofline.collective_time_s` (alpha-beta model
plus a mid-size ramp, `Efficiency.collective_*` fitted on the shared H100 NCCL table;
send/recv with the `comm_bw_fraction` prior); the link comes from `GPUSpec.link(span)`, where
``span`` is how many consecutive ranks the group's members cover under the placement
TP innermost, then CP, then DP, then PP (see `layout`):

    group       size        span              when it runs (per micro-batch unless noted)
    TP          tp          tp                2 all-reduces (attention, MLP) forward and backward;
                                              with sequence parallelism all-gather + reduce-scatter
    CP          cp          tp*cp             ring attention: cp-1 K/V send/recv steps per layer
                                              forward, K/V + dK/dV backward (overlapped with attention)
    EP          ep          ep                all-to-all dispatch + combine, forward and backward
    PP          2           num_gpus          send/recv of the micro-batch's activations (1/tp of
                                              them: scatter/gather or SP) per virtual stage
    DP          dp*cp       tp*cp*dp          gradient all-reduce (zero 0) / reduce-scatter (zero>=1)
                                              per step, parameter all-gather (zero>=1); zero 2 reduces
                                              per micro-batch, zero 3 also gathers per micro-batch
    expert-DP   tp*cp*dp/ep tp*cp*dp          the same for expert weights

`collective_time_s` takes one group size at a time, so the helpers below loop over the few
distinct (group, span) pairs of a layout batch and fill the numpy result where they apply.
"""

from __future__ import annotations

import numpy as np

from ..cost.roofline import collective_time_s
from ..hardware.spec import GPUSpec


def link_tier(gpu: GPUSpec, span: int) -> str:
    return gpu.link(max(1, int(span)))[2]


def coll(collective: str, nbytes, group, span, gpu: GPUSpec) -> np.ndarray:
    """Time of `collective` over groups of size `group` whose members span `span` ranks (arrays)."""
    nbytes = np.asarray(nbytes, float)
    group = np.asarray(group, np.int64)
    span = np.asarray(span, np.int64)
    nbytes, group, span = np.broadcast_arrays(nbytes, group, span)
    out = np.zeros(nbytes.shape)
    e = gpu.efficiency
    if collective == "send_recv":
        active = group > 1
        keys: np.ndarray | list[int] = np.unique(span[active]) if active.any() else []
        for sp in keys:
            mask = active & (span == sp)
            bw, lat, _ = gpu.link(int(sp))
            out[mask] = collective_time_s("send_recv", nbytes[mask], 2, bw, lat, e)
        return out
    pairs = np.unique(np.stack([group, span]), axis=1)
    for g, sp in pairs.T:
        if g <= 1:
            continue
        mask = (group == g) & (span == sp)
        bw, lat, _ = gpu.link(int(sp))
        out[mask] = collective_time_s(collective, nbytes[mask], int(g), bw, lat, e)
    return out
