"""KV-cache hand-offs of disaggregated serving: what one costs, and how many share the links.

A prefill worker's prompt KV cache moves to a decode worker over NVLink when both pools sit in
one NVLink domain of the same GPU type, else over each side's scale-out NIC; every GPU sends
(receives) its own shard at once (`kv_handoff_parts`, `kv_handoff_s`).

In a simulation (`Handoffs`) the hand-offs take turns at the links of both ends, first come,
first served: each worker has one set of links per attention-DP rank, a hand-off takes the
earliest free set at each end and keeps it busy for its own bytes at that end's bandwidth, and
the KV has arrived when both ends are done, plus the link's latency. A hand-off alone takes
latency + the slower end. `Handoffs` also keeps what the output reports: the transfer and link
wait of every hand-off (`summary`), the TTFT of the counted requests in parts (`ttft_parts`) and,
in exact mode, those parts request by request (`per_request`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..hardware.spec import GPUSpec


def kv_handoff_s(tokens: int, src_gpu: GPUSpec, src_gpus_per_worker: int, src_kv_bytes_per_token: float,
                 dst_gpu: GPUSpec, dst_gpus_per_worker: int, dst_kv_bytes_per_token: float,
                 domain_gpus: int | None = None) -> float:
    """Seconds to move `tokens` tokens of KV cache from a prefill worker to a decode worker: the
    link's latency plus the slower end's transfer. Each GPU sends (receives) its own shard,
    `*_kv_bytes_per_token` per GPU, over its own link, all GPUs of a worker at once: over NVLink
    when both workers fit one NVLink domain of the same GPU type (`domain_gpus`, when given: every
    GPU of both pools, so that any prefill worker can reach any decode worker), else over each side's NIC. A
    decode worker with fewer GPUs than the prefill worker receives more bytes per GPU (prefill
    tp8 -> decode tp1: the one decode GPU takes all eight shards), and a slower NIC on either
    side sets the pace (`kv_handoff_parts` gives each end's time)."""
    p = kv_handoff_parts(src_gpu, src_gpus_per_worker, src_kv_bytes_per_token,
                         dst_gpu, dst_gpus_per_worker, dst_kv_bytes_per_token, domain_gpus)
    return p.latency_s + tokens * max(p.send_s_per_token, p.recv_s_per_token)


class HandoffParts(NamedTuple):
    """A KV hand-off's link (`kv_handoff_parts`)."""

    latency_s: float
    send_s_per_token: float  # at each sending GPU's link
    recv_s_per_token: float  # at each receiving GPU's link
    link: str  # 'nvlink' | 'network' (each side's scale-out NIC)


def kv_handoff_parts(src_gpu: GPUSpec, src_gpus_per_worker: int, src_kv_bytes_per_token: float,
                     dst_gpu: GPUSpec, dst_gpus_per_worker: int, dst_kv_bytes_per_token: float,
                     domain_gpus: int | None = None) -> HandoffParts:
    """`kv_handoff_s` in parts: the link's latency, the seconds per token at the sending GPUs'
    links and at the receiving GPUs' links, and which link. One hand-off alone takes latency +
    tokens x the larger; `simulate` keeps each end busy for its own part, so that hand-offs queue
    where the bytes do (a tp1 prefill GPU sending to a tp4 decode worker keeps its one NIC busy
    four times as long as each of the four receiving NICs)."""
    together = src_gpus_per_worker + dst_gpus_per_worker if domain_gpus is None else domain_gpus
    same_domain = (src_gpu.name == dst_gpu.name and together <= src_gpu.nvlink_domain_size
                   and src_gpu.nvlink_bandwidth_gbps > 0)
    if same_domain:
        bw_src = bw_dst = src_gpu.nvlink_bandwidth_gbps * 1e9
        lat = src_gpu.nvlink_latency_us * 1e-6
    else:
        bw_src, bw_dst = src_gpu.nic_bandwidth_gbps * 1e9, dst_gpu.nic_bandwidth_gbps * 1e9
        lat = max(src_gpu.nic_latency_us, dst_gpu.nic_latency_us) * 1e-6
    return HandoffParts(lat, src_kv_bytes_per_token / bw_src, dst_kv_bytes_per_token / bw_dst,
                        "nvlink" if same_domain else "network")


class Handoffs:
    """The hand-offs of one simulation (module docstring). `parts`: the link between the two
    pools; `prefill_links` / `decode_links`: link sets per worker (its attention-DP ranks);
    `fixed_s`: the front end's fixed hand-off time after each transfer; `first_from_decode`:
    whether the decode worker streams the first token; `n_requests`: keep each request's figures
    (exact mode; None in streaming mode, where request ids are recycled slots)."""

    def __init__(self, parts: HandoffParts, prefill_links: int, decode_links: int, fixed_s: float,
                 first_from_decode: bool, n_requests: int | None = None):
        self.parts, self.fixed_s, self.first_from_decode = parts, float(fixed_s), bool(first_from_decode)
        self._prefill_links, self._decode_links = int(prefill_links), int(decode_links)
        self._send_s_per_token, self._recv_s_per_token = parts.send_s_per_token, parts.recv_s_per_token
        self._alone_s_per_token = max(self._send_s_per_token, self._recv_s_per_token)
        # worker -> when each of its link sets is next free, at the sending and at the receiving end
        self._prefill_free_s: dict[int, list[float]] = {}
        self._decode_free_s: dict[int, list[float]] = {}
        # every hand-off (warm-up included)
        self.n_handoffs = 0
        self._transfer_sum_s = self._transfer_max_s = self._wait_sum_s = self._wait_max_s = 0.0
        # the counted requests' TTFT parts (sums over `_n_counted` requests)
        self._n_counted = 0
        self._queue_sum_s = self._prefill_sum_s = self._counted_transfer_sum_s = self._counted_wait_sum_s = self._ttft_sum_s = 0.0
        self.in_flight: dict[int, tuple[float, float, float]] = {}  # request -> (prefill end, transfer, link wait), s
        # exact mode: each request's (prefill end, transfer, link wait), s; NaN until handed off
        self._per_request_s: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if n_requests is not None:
            self._per_request_s = (np.full(n_requests, np.nan), np.full(n_requests, np.nan), np.full(n_requests, np.nan))

    def send(self, rid: int, t: float, src_worker: int, dst_worker: int, tokens: int) -> float:
        """Request `rid`'s prefill ended at `t` on prefill worker `src_worker` (any worker numbering
        that tells workers apart); its `tokens` tokens of KV go to decode worker `dst_worker`.
        Returns when they have arrived (before the fixed hand-off time)."""
        src = self._prefill_free_s.setdefault(src_worker, [0.0] * self._prefill_links)
        dst = self._decode_free_s.setdefault(dst_worker, [0.0] * self._decode_links)
        k, j = src.index(min(src)), dst.index(min(dst))
        sent = src[k] = (t if t > src[k] else src[k]) + tokens * self._send_s_per_token
        got = dst[j] = (t if t > dst[j] else dst[j]) + tokens * self._recv_s_per_token
        done = sent if sent > got else got
        arrived = done + self.parts.latency_s
        took, waited = arrived - t, done - (t + tokens * self._alone_s_per_token)  # exactly 0 when no link was busy
        self.n_handoffs += 1
        self._transfer_sum_s += took
        self._wait_sum_s += waited
        if took > self._transfer_max_s:
            self._transfer_max_s = took
        if waited > self._wait_max_s:
            self._wait_max_s = waited
        self.in_flight[rid] = (t, took, waited)
        pr = self._per_request_s
        if pr is not None:
            pr[0][rid], pr[1][rid], pr[2][rid] = t, took, waited
        return arrived

    def done(self, rid: int, counted: bool, arrival: float, scheduled: float, first_token: float) -> None:
        """Request `rid` finished (times in s: arrived, first scheduled on the prefill worker, first
        token); `counted`: the summary counts it (not warm-up). A request that was never handed off
        (one output token) is not in the parts."""
        h = self.in_flight.pop(rid, None)
        if h is None or not counted:
            return
        prefill_end, took, waited = h
        self._n_counted += 1
        self._queue_sum_s += scheduled - arrival
        self._prefill_sum_s += prefill_end - scheduled
        self._counted_transfer_sum_s += took
        self._counted_wait_sum_s += waited
        self._ttft_sum_s += first_token - arrival

    def summary(self) -> dict:
        """The summary's `kv_handoff`: the link, the number of hand-offs, their transfer time (prefill
        end -> KV arrived) and link wait (mean, max; ms), and the fixed hand-off time (ms)."""
        n = self.n_handoffs
        return {
            "link": self.parts.link, "handoffs": n,
            "transfer_ms": {"mean": 1e3 * self._transfer_sum_s / n if n else None, "max": 1e3 * self._transfer_max_s if n else None},
            "link_wait_ms": {"mean": 1e3 * self._wait_sum_s / n if n else None, "max": 1e3 * self._wait_max_s if n else None},
            "fixed_ms": 1e3 * self.fixed_s,
        }

    def ttft_parts(self) -> dict:
        """The summary's `ttft_parts_ms`: the counted, handed-off requests' TTFT mean in parts (ms).
        Where the decode worker streams the first token they add up to the TTFT (`decode_first`:
        the rest, waiting for a decode slot and the first iteration); else TTFT = queue + prefill."""
        k = self._n_counted
        if not k:
            return {"requests": 0}
        q, pre, ho, wait, ttft = (1e3 * x / k for x in (self._queue_sum_s, self._prefill_sum_s, self._counted_transfer_sum_s,
                                                        self._counted_wait_sum_s, self._ttft_sum_s))
        fixed = 1e3 * self.fixed_s
        out = {"requests": k, "queue": q, "prefill": pre, "kv_handoff": ho, "kv_link_wait": wait, "handoff_fixed": fixed}
        if self.first_from_decode:
            out["decode_first"] = ttft - q - pre - ho - fixed
        out["ttft"] = ttft
        return out

    def per_request(self, scheduled_s: np.ndarray, first_token_s: np.ndarray) -> dict[str, np.ndarray]:
        """Exact mode: the per-request columns (ms; NaN for a request never handed off): `prefill_ms`,
        `kv_handoff_ms`, `kv_link_wait_ms`, `handoff_fixed_ms` and, where the decode worker streams
        the first token, `decode_first_ms`."""
        if self._per_request_s is None:
            return {}
        prefill_end_s, transfer_s, wait_s = self._per_request_s
        handed = ~np.isnan(transfer_s)
        out = {"prefill_ms": (prefill_end_s - scheduled_s) * 1e3, "kv_handoff_ms": transfer_s * 1e3,
               "kv_link_wait_ms": wait_s * 1e3, "handoff_fixed_ms": np.where(handed, self.fixed_s * 1e3, np.nan)}
        if self.first_from_decode:
            out["decode_first_ms"] = (first_token_s - prefill_end_s - transfer_s - self.fixed_s) * 1e3
        return out
