"""`simulate`: run a request stream through a deployment, event by event.

A deployment is one or more engine replicas of a model (aggregated), or a prefill pool and
a decode pool (disaggregated, as Splitwise / DistServe / Dynamo), each pool with its own
GPU type, count and layout. Requests arrive (open loop: timestamps; closed loop: N clients
each sending the next request when the previous finishes), a router picks a replica, and
each engine (`engine.Engine`) runs iterations whose duration comes from the operator cost
model (`steptime.StepTimeModel`).

Parallelism inside a replica:
- tp / dp / ep: one engine whose iteration time comes from the cost model for that layout;
  with attention-DP the KV cache of all dp ranks is pooled (dp x per-GPU capacity).
- pp: the replica runs `pp` virtual engines (as vLLM's virtual engines), each with 1/pp of the
  KV cache, so pp micro-batches are in flight. They share the replica's pp stages
  (`engine.Pipeline`): a micro-batch takes each stage in turn for its layers' share of the
  iteration's time (vLLM's split, `engine.pp_stage_layers`; the last stage also runs the LM
  head), one micro-batch per stage at a time, first come first served -- the slowest stage sets
  the pace of equal micro-batches, and a long prefill micro-batch holds the others' decodes up
  behind it (a pipeline bubble).

Disaggregation: a prefill engine runs the prompt, then the request's KV cache moves to a
decode engine: hand-off time = KV bytes per GPU / link bandwidth + link latency + the front
end's fixed hand-off time (`Deployment.disagg_handoff_s`, default the backend's fitted
`disagg_handoff_s`: router / proxy round trips, transfer handshake, polling), over NVLink when
both pools sit in one NVLink domain, else over the scale-out NIC (every GPU sends its shard in
parallel). The router picks the decode engine when the prompt's prefill ends (the transfer needs
its destination; in flight, the request counts as routed there). Hand-offs take turns at the links
of both ends, first come, first served, each end busy for its own bytes at its own bandwidth
(`kv_handoff_parts`); the KV has arrived when both ends are done. Eight prompts finishing in one
iteration leave one after another, the last arriving when all eight have crossed, as under an
even share of the bandwidth; four prefill workers sending to one decode worker queue at its links
the same way, as far as its links are the slower end. A worker with attention-DP ranks has a set of
links per rank, the KV leaving and arriving by the earliest free (`handoff.py`). The decode
engine admits the request when a sequence slot and blocks are free. Which token
the client sees first (TTFT) follows the serving front end (`Deployment.first_token_from`,
default the backend's `disagg_first_token`): 'decode' -- the decode engine streams it at the
end of its first iteration with the request (vLLM / SGLang P/D proxies stream every token from
the decode worker), so TTFT includes the KV transfer and any wait for a decode slot, and the
decode engine generates all output tokens; 'prefill' -- the prefill engine's token (TRT-LLM's
disaggregated server yields the context response first; DistServe / Splitwise).
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..checks import MAX_SETTING_S, check_bool, check_seed, is_int, is_number, python_scalars
from ..cost.ops import check_ep_imbalance, resolve_ep_imbalance
from ..dtypes import gemm_compute_dtype
from ..errors import LlmsimError
from ..estimate import resolve_kernels
from ..hardware.catalog import get_gpu
from ..hardware.spec import GPUSpec
from ..layout import Parallel, Precision
from ..memory.model import kv_bytes_per_token_per_gpu, kv_pool, memory_breakdown
from ..models.catalog import get_model
from ..models.spec import ModelSpec
from . import engine as _engine_module
from .handoff import HandoffParts, Handoffs, kv_handoff_parts, kv_handoff_s  # noqa: F401 (re-exported)
from .backends import Backend, get_backend
from .engine import MAX_REQUESTS, Engine, EngineConfig, Pipeline, Requests, pp_stage_layers
from .metrics import SLO, GpuGroup, ItlHistogram, StreamingSummary, mean_busy_fraction, summarize
from .specdecode import SpecDecoding, draft_kv_tokens
from .steptime import StepTimeModel
from .workload import Workload

# which build of the inner loop runs (setup.py): 'compiled' (mypyc) or 'python'; the results are the same
SIMULATOR_BUILD = "python" if _engine_module.__file__.endswith(".py") else "compiled"

ROUTERS = ("round_robin", "least_outstanding", "prefix")
_ARRIVAL_CHUNK = 1 << 16  # open-loop arrival times converted to Python floats this many at a time
_RECORD_BATCH = 1024  # streaming: completed requests whose metrics are taken together (numpy) before their slots are freed


@dataclass
class Pool:
    """A set of identical engine replicas."""

    gpu: str | GPUSpec = "h100-sxm"
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    workers: int = 1
    # this pool's token budget per replica, as the engine counts it (SGLang: per replica, divided
    # among its attention-DP ranks; vLLM / TRT-LLM: the dp ranks' budgets together). None: the
    # Deployment's `max_num_batched_tokens`, else the engine's default. A disaggregated prefill
    # pool is often given a larger one than its decode pool
    max_num_batched_tokens: int | None = None
    # this pool's cap on running requests per replica, as the engine counts it (like
    # `Deployment.max_num_seqs`); None: the Deployment's, else the engine's default
    max_num_seqs: int | None = None

    def __post_init__(self) -> None:
        python_scalars(self)

    @property
    def gpus_per_worker(self) -> int:
        return self.tp * self.pp * self.dp


@dataclass
class Deployment:
    model: str | ModelSpec = "llama-3.1-8b"
    pool: Pool = field(default_factory=Pool)  # aggregated serving
    prefill: Pool | None = None  # disaggregated: both prefill and decode set
    decode: Pool | None = None
    backend: str = "vllm"
    weight_dtype: str = "bf16"
    act_dtype: str | None = None
    kv_dtype: str | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    chunked_prefill: bool | None = None
    # decodes share iterations with prefill chunks (None: the backend's `Backend.mixed_batches`;
    # False is SGLang's default: prefill batches run alone)
    mixed_batches: bool | None = None
    static_batching: bool = False
    block_size: int = 16
    preemption: str = "recompute"
    prefix_caching: bool = True
    router: str = "least_outstanding"
    kernels: str | None = "auto"
    cpu_overhead_s: float | None = None
    cpu_per_seq_s: float | None = None  # None: the backend's (`Backend.cpu_per_seq_s`)
    prefill_layer_s: float | None = None  # None: the backend's on the GPU (`Backend.prefill_fixed_for`); given: on any GPU without kernel tables
    prefill_moe_layer_s: float | None = None  # None: the backend's on the GPU (`Backend.prefill_fixed_for`); given: likewise
    moe_efficiency: float | None = None  # every pool; None: the backend's (`Backend.moe_efficiency_for` the pool)
    # bytes/s per GPU the MoE all-to-alls of attention-DP + EP pools reach in iterations that run
    # prefill (None: the backend's `Backend.prefill_a2a_bw_bytes_s`; 0: the collective model's)
    prefill_a2a_bw_bytes_s: float | None = None
    # the tensor-parallel all-reduce and the RMSNorm after it run as one kernel (True), as
    # separate kernels (False), or as the engine does (None: `Backend.allreduce_norm_fusion`)
    allreduce_norm_fusion: bool | None = None
    # overlap scheduling: the engines schedule the next iteration while one runs, so a new request
    # waits one iteration more (True), a blocking loop (False), or as the engine does for each
    # role (None: `Backend.overlap_scheduling`)
    overlap_scheduling: bool | None = None
    # serial front end: seconds per prompt token before a request reaches an engine (None: the
    # backend's `Backend.frontend_s_per_token`)
    frontend_s_per_token: float | None = None
    # KV kept back at admission for running requests' future output (None: the backend's
    # `Backend.kv_reserve_output`; 0 = vLLM-style optimistic admission with preemption, 1 =
    # TRT-LLM's GUARANTEED_NO_EVICT)
    kv_reserve_output: float | None = None
    # expert-parallel load imbalance of MoE layers (pools with ep > 1): the busiest GPU's share of
    # the routed tokens over the mean share, which sets the MoE step. None or 1.0: balanced
    # (default); a number >= 1 as given; 'auto': from the model's routing skew
    # (`cost.ops.expected_ep_imbalance`, without redundant experts or EPLB)
    ep_imbalance: float | str | None = None
    # None: the backend's; a share of the GPU (vLLM, SGLang) or, for TRT-LLM, of the memory the
    # weights leave free (`Backend.memory_fraction_of`)
    memory_fraction: float | None = None
    price_per_hour_usd: float | None = None
    # disaggregated: which engine emits the token the client sees first (TTFT). 'decode': the
    # decode engine's first iteration after the KV hand-off (the vLLM / SGLang P/D proxies
    # stream every token from the decode worker, so TTFT includes the KV transfer and waiting
    # for a decode slot); 'prefill': the prefill engine's token (TRT-LLM's disaggregated
    # server yields the context server's response first; DistServe / Splitwise; AIConfigurator's
    # estimate). None: the backend's (`Backend.disagg_first_token`)
    first_token_from: str | None = None
    # disaggregated: fixed seconds each prefill -> decode hand-off takes beyond the KV bytes on
    # the link (front-end round trips, transfer handshake, schedulers polling between
    # iterations). None: the backend's (`Backend.disagg_handoff_s`)
    disagg_handoff_s: float | None = None
    # batch waiting (TRT-LLM's `batch_wait_timeout_iters` / `batch_wait_max_tokens_ratio`, both
    # off by default): while decodes run, new prefill work is held back for up to
    # batch_wait_iters iterations until the scheduled prompts' tokens plus the decode tokens
    # reach batch_wait_tokens_ratio x max_num_batched_tokens (`EngineConfig.batch_wait_iters`).
    # Like TRT-LLM, not applied with attention DP or without mixed prefill/decode iterations
    batch_wait_iters: int = 0
    batch_wait_tokens_ratio: float = 0.0
    # attention-DP balance (TRT-LLM's `attention_dp_config: {enable_balance: true, timeout_iters,
    # batching_wait_iters}`; off by default there, and 0 = off here): with attention DP, prompts
    # wait until every rank has one, or until a counter of iterations reaches
    # adp_balance_timeout_iters, or a rank has no decodes; adp_balance_batching_iters more
    # iterations once every rank has one (`EngineConfig.adp_balance_timeout_iters`). TRT-LLM's
    # defaults once enabled: 50 and 10. Aggregated and prefill engines with dp > 1
    adp_balance_timeout_iters: int = 0
    adp_balance_batching_iters: int = 0
    # receive interval (SGLang's `--scheduler-recv-interval`, 1 = off, its default): while only
    # decodes run, new requests reach the scheduler every recv_interval_iters decode
    # iterations (right after a prefill iteration, or at once when idle); the wait is part of
    # TTFT (`EngineConfig.recv_interval_iters`). Aggregated and prefill engines
    recv_interval_iters: int = 1
    # speculative decoding (`specdecode.SpecDecoding`: draft head, drafts per step, mean accepted
    # drafts per step) in every pool that decodes; None: off
    spec_decoding: SpecDecoding | None = None
    # seed of the simulator's own random choices (the attention-DP rank of each request where
    # the engine draws it at random, `Backend.prefill_dp_routing`); the workload has its own
    seed: int = 0

    def __post_init__(self) -> None:
        python_scalars(self)

    @property
    def disaggregated(self) -> bool:
        return self.prefill is not None or self.decode is not None


@dataclass
class ServeResult:
    summary: dict
    requests: Requests
    engines: list[Engine]
    wall_s: float
    streaming: bool = False
    # exact mode: the ids of the requests excluded from the summary as warm-up (the first
    # `Workload.warmup` completions)
    warmup_request_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    # exact mode, disaggregated: the hand-offs, request by request (`handoff.Handoffs`)
    handoffs: Handoffs | None = None

    def per_request(self) -> dict[str, np.ndarray]:
        """One row per request (`metrics.per_request_table`). A disaggregated run adds the parts of
        the way to the first token: `prefill_ms` (first scheduled on the prefill worker -> prefill
        ended), `kv_handoff_ms` (-> the KV arrived at the decode worker; of it `kv_link_wait_ms`
        waiting for links busy with other hand-offs), `handoff_fixed_ms` (the front end's fixed
        time) and, where the decode worker streams the first token, `decode_first_ms` (-> that
        token: waiting for a decode slot and the first iteration). There queue_ms + prefill_ms +
        kv_handoff_ms + handoff_fixed_ms + decode_first_ms = ttft_ms."""
        from .metrics import per_request_table

        if self.streaming:
            raise LlmsimError("per-request results need the exact mode: a streaming simulation keeps no per-request state",
                              hint="run simulate(..., streaming=False) (CLI: drop --streaming) to get per-request output")
        r = self.requests
        t = per_request_table(np.frombuffer(r.arrival), np.frombuffer(r.t_first), np.frombuffer(r.t_finish),
                              np.frombuffer(r.inp, dtype=np.int64), np.frombuffer(r.out, dtype=np.int64),
                              first_scheduled_s=np.frombuffer(r.t_sched), warmup_ids=self.warmup_request_ids)
        if self.handoffs is not None:
            t.update(self.handoffs.per_request(np.frombuffer(r.t_sched), np.frombuffer(r.t_first)))
        return t


@dataclass
class _PoolBuild:
    pool: Pool
    gpu: GPUSpec
    par: Parallel
    st: StepTimeModel
    cfg: EngineConfig
    engines: list[Engine] = field(default_factory=list)


def _pool_named(role: str, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), its errors naming the pool they are about (a disaggregated deployment has two)."""
    try:
        return fn(*args)
    except LlmsimError as e:
        if e.message.startswith(f"the {role} pool"):
            raise
        flag = f"--{role}-"
        raise LlmsimError(f"the {role} pool ({flag}* options): {e.message}", hint=e.hint) from None


def pool_batched_tokens(pool: Pool, dep: Deployment) -> int | None:
    """The token budget given for `pool`'s engines: its own (`Pool.max_num_batched_tokens`), else the
    Deployment's; None where neither sets one (the engine's default)."""
    return pool.max_num_batched_tokens if pool.max_num_batched_tokens is not None else dep.max_num_batched_tokens


def _build_pool(spec: ModelSpec, pool: Pool, dep: Deployment, be: Backend, prec: Precision, role: str,
                step_time_model: Callable[..., StepTimeModel] = StepTimeModel, held_tokens: int = 0) -> _PoolBuild:
    # (the parallel degrees are `Parallel.validate`'s to check)
    _check_int("workers", pool.workers, None, "engine replicas in the pool, a whole number, e.g. Pool('h100-sxm', tp=2, workers=3)")
    if pool.max_num_seqs is not None:
        _check_int("a pool's max_num_seqs", pool.max_num_seqs, 1,
                   "the most requests one engine of this pool runs at once (e.g. 256); None = the deployment's")
    if pool.max_num_batched_tokens is not None:
        _check_int("a pool's max_num_batched_tokens", pool.max_num_batched_tokens, 1,
                   "the most tokens one iteration of this pool's engines processes (e.g. 16384); None = the deployment's")
    if pool.workers < 1:
        flag = {"prefill": "--prefill-workers", "decode": "--decode-workers"}.get(role, "--replicas")
        raise LlmsimError(f"the {'aggregated' if role == 'both' else role} pool needs at least one worker (engine replica), got {pool.workers}",
                          hint=f"e.g. {flag} 1 (Pool(workers=1))")
    if not isinstance(pool.gpu, (str, GPUSpec)):
        raise LlmsimError(f"a pool's gpu must be a catalog id, a GPU file path or a GPUSpec, got {pool.gpu!r}",
                          hint="e.g. Pool('h100-sxm', tp=2)")
    # a GPUSpec is used as given unless the Deployment sets a price, which every GPU takes
    gpu = pool.gpu if isinstance(pool.gpu, GPUSpec) and dep.price_per_hour_usd is None else get_gpu(
        pool.gpu, price_per_hour_usd=dep.price_per_hour_usd)
    par = Parallel(pool.tp, pool.pp, pool.dp, pool.ep).validate(spec)
    gpu.peak_flops_per_s(gemm_compute_dtype(prec.weight, prec.act))
    given_seqs = pool.max_num_seqs if pool.max_num_seqs is not None else dep.max_num_seqs
    if given_seqs is None:
        # the engine's default running-request cap, for this pooled engine of all dp attention-DP
        # ranks: vLLM's max_num_seqs is per DP engine core and TRT-LLM's max_batch_size per rank,
        # so x dp, as their token budget; SGLang's --max-running-requests is per replica (with DP
        # attention it is divided among the ranks), as its chunk size. `Backend.budget_per_dp_rank`
        # says which (an explicit max_num_seqs is the pooled engine's, the replica's, as given)
        seqs = be.default_max_num_seqs(gpu) * (par.dp if be.budget_per_dp_rank else 1)
    else:
        seqs = given_seqs
    chunked = be.chunked_prefill if dep.chunked_prefill is None else dep.chunked_prefill
    mixed = be.mixed_batches if dep.mixed_batches is None else dep.mixed_batches
    mbt = pool_batched_tokens(pool, dep)
    if given_seqs is None and mbt is not None and mixed:
        seqs = min(seqs, mbt)  # as the engines clamp their default to a given token budget
    if mbt is None:  # the engine's default for this GPU and DP size, room for every decode when mixed
        mbt = be.batched_tokens(gpu, par.dp)
        mbt = max(mbt, seqs) if mixed else mbt
    mbt = be.iteration_budget(mbt, chunked, spec.max_position_embeddings)
    if mbt < seqs and mixed:
        raise LlmsimError(f"max_num_batched_tokens ({mbt}) must be ≥ max_num_seqs ({seqs}) when decodes share iterations with prefill chunks",
                          hint="raise --max-num-batched-tokens or lower --max-num-seqs")
    frac = be.memory_fraction if dep.memory_fraction is None else dep.memory_fraction
    mem = memory_breakdown(spec, gpu, par, prec, batch=1, seq_len=1, max_batched_tokens=mbt // max(par.dp, 1) * par.dp,
                           memory_fraction=frac, block_size=dep.block_size, fraction_of=be.memory_fraction_of)
    if mem.max_kv_tokens <= 0:
        raise LlmsimError(
            f"{spec.name} on {pool.tp * pool.pp * pool.dp}x {gpu.name} (tp={pool.tp} pp={pool.pp} dp={pool.dp}) leaves no room for a KV cache: "
            + mem.message.replace("does not fit", "weights and activations do not fit"),
            hint="use more GPUs per replica (tp/pp)" + ("" if prec.weight in ("fp8", "fp4", "int4")
                                                        else ", fp8 weights" if gpu.supports("fp8") and prec.weight != "int8"
                                                        else ", int4 weights" if prec.weight == "int8" else ", int8 / int4 weights")
                 + ", or a GPU with more memory",
        )
    why = be.check_gpu(gpu)
    if why:
        raise LlmsimError(why, hint="use --backend vllm or sglang on this GPU, or an NVIDIA GPU")
    kernels = resolve_kernels(dep.kernels, gpu)
    # the Deployment's overrides of the engine's host and kernel parameters (None keeps the backend's)
    be = be.with_(cpu_overhead_s=dep.cpu_overhead_s, cpu_per_seq_s=dep.cpu_per_seq_s,
                  moe_efficiency=dep.moe_efficiency, a2a_moe_efficiency=dep.moe_efficiency,
                  prefill_a2a_bw_bytes_s=dep.prefill_a2a_bw_bytes_s)
    # speculative decoding where this pool decodes (a prefill pool's requests leave after one token)
    sd = dep.spec_decoding if role != "prefill" else None
    st = be.step_time(spec, gpu, par, prec, kernels, step_time_model, dep.allreduce_norm_fusion,
                      resolve_ep_imbalance(dep.ep_imbalance, spec.num_experts, par.ep),
                      prefill_layer_s=dep.prefill_layer_s, prefill_moe_layer_s=dep.prefill_moe_layer_s,
                      spec_draft_tokens=sd.num_draft_tokens if sd else 0, spec_tokens_per_step=sd.tokens_per_step if sd else 1.0)
    # per virtual engine, in tokens of the layers a sequence's KV grows in (`memory.model.kv_pool`:
    # a sliding-window layer's window counts as fixed state, as a linear-attention layer's state)
    kvp = kv_pool(spec, par, prec, mem, held_tokens, dep.block_size)
    kv_cap = kvp.capacity_tokens
    # iteration counters (scheduler polls, batch waits, attention-DP balance) count real
    # iterations; with speculative decoding the engine's decode ticks are 1 / tokens_per_step of one
    ticks = st.spec_tokens_per_step
    if sd:  # the draft head's weights and its layer's KV share the pool
        kv_cap = draft_kv_tokens(kv_cap, kvp.token_bytes, kv_bytes_per_token_per_gpu(spec, par, prec, layers=1),
                                 mem.weights_bytes / spec.num_layers, par.dp) // dep.block_size * dep.block_size
    kv_token_bytes = kv_bytes_per_token_per_gpu(spec, par, prec)  # every KV layer's: swaps and hand-offs
    wait_iters = round(dep.batch_wait_iters * ticks) if par.dp == 1 and mixed else 0  # TRT-LLM: no batch waiting with attention DP
    adp_t = round(dep.adp_balance_timeout_iters * ticks) if par.dp > 1 and role != "decode" else 0  # (decode engines get no prompts)
    cfg = EngineConfig(
        max_num_seqs=seqs, max_num_batched_tokens=mbt, chunked_prefill=chunked, mixed_batches=mixed, static_batching=dep.static_batching,
        # attention DP with chunked prefill: each rank's scheduler has its share of the budget, and
        # a chunk runs on one rank (whole prompts, unchunked, take no cap and no per-rank queues)
        max_chunk_tokens=mbt // par.dp if par.dp > 1 and chunked else 0,
        random_rank_queues=par.dp if par.dp > 1 and chunked and role == "prefill" and be.prefill_dp_routing == "random" else 0,
        rank_seed=dep.seed,
        block_size=dep.block_size, kv_capacity_tokens=kv_cap, preemption=dep.preemption, prefix_caching=dep.prefix_caching,
        swap_bandwidth_bytes_per_s=gpu.pcie_bandwidth_gbps * 1e9, kv_bytes_per_token=kv_token_bytes,
        # a hybrid model's linear-attention state and the sliding layers' window, held per sequence out of the same memory
        seq_state_tokens=kvp.state_tokens,
        role=role, first_token_here=role == "decode" and (dep.first_token_from or be.disagg_first_token) == "decode",
        # a prefill engine's requests leave after one token: nothing to keep back for
        kv_reserve_output=0.0 if role == "prefill" else be.kv_reserve_output if dep.kv_reserve_output is None else dep.kv_reserve_output,
        kv_reserve_cap_tokens=be.kv_reserve_cap_tokens,
        batch_wait_iters=wait_iters,
        batch_wait_tokens_ratio=float(dep.batch_wait_tokens_ratio) if wait_iters else 0.0,
        recv_interval_iters=max(1, round(dep.recv_interval_iters * ticks)),  # (a decode-role engine ignores it)
        adp_balance_timeout_iters=adp_t,
        adp_balance_batching_iters=round(dep.adp_balance_batching_iters * ticks) if adp_t else 0,
        adp_ranks=par.dp,
        overlap_scheduling=be.overlaps(role, par, dep.overlap_scheduling),
        prefix_dedup_on_insert=be.prefix_dedup_on_insert,
    )
    return _PoolBuild(pool, gpu, par, st, cfg)


class _Router:
    def __init__(self, engines: list[Engine], policy: str):
        if policy not in ROUTERS:
            raise LlmsimError(f"unknown router {policy!r}", hint=f"use one of {', '.join(ROUTERS)}")
        self.engines, self.policy, self._rr = engines, policy, 0
        for e in engines:  # engines whose load (outstanding requests) this router compares
            e.routed = len(engines) > 1 and policy != "round_robin"

    def pick(self, rid: int) -> Engine:
        es = self.engines
        if len(es) == 1:
            return es[0]
        if self.policy == "round_robin":
            e = es[self._rr % len(es)]
            self._rr += 1
            return e
        if self.policy == "prefix":
            best = max(es, key=lambda e: (e.prefix_match_tokens(rid), -e.outstanding - e.in_front, -e.eid))
            if best.prefix_match_tokens(rid) > 0:
                return best
        return min(es, key=lambda e: (e.outstanding + e.in_front, e.eid))


def simulate(
    dep: Deployment,
    wl: Workload,
    *,
    slo: SLO | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_itl: bool = True,
    step_time_model: Callable[..., StepTimeModel] = StepTimeModel,
    streaming: bool = False,
) -> ServeResult:
    """Simulate `wl` on `dep`; returns the metrics summary and per-request state.

    Exact mode (default): per-request state is kept for every request (~0.5 KB each, so
    about 0.5 GB per million requests), percentiles are exact (numpy) and
    `ServeResult.per_request()` gives one row per request.

    Streaming mode (`streaming=True`): memory is bounded by the number of requests in flight,
    not by the number of requests. A request takes a recycled slot of the engines' state
    (`engine.Requests`) when it arrives and frees it once its metrics are recorded after it
    finishes (finished requests are recorded together, `_RECORD_BATCH` at a time); metrics are
    accumulated on the fly (`metrics.StreamingSummary`): counts, token totals, means, min /
    max, throughput, goodput and SLO attainment as in exact mode, and TTFT / TPOT / E2E /
    queueing percentiles from log histograms of 1.01x bins (within 0.5% of the exact ones, or
    0.0005 ms under 1 us; the summary's ``"percentiles"`` entry says so). The simulated
    trajectory is the same as in exact mode. What still grows with the number of requests is
    the workload itself: its numpy arrays (arrival, input and output lengths: 24 bytes per
    request; closed loop with client jitter +8) and, for traces with prefix hashes, their
    hash-id arrays. `ServeResult.per_request()` raises `LlmsimError`.

    Warm-up (`Workload.warmup`): the summary leaves out the first completions, both modes
    alike (`_warmup_count`); ITL, a pool of token gaps, is cut by time: when the completion
    that ends the warm-up is reported, the shared ITL histogram is emptied and every engine
    drops its buffered gaps, so `itl_ms` holds the gaps recorded after the warm-up cut-off.
    Energy is summed per pool (its GPUs' TDP and idle power, its engines' busy time).

    `step_time_model` builds each pool's iteration-time model (same signature as
    `StepTimeModel`); the planner passes a factory that shares them across runs."""
    t_wall = time.perf_counter()
    if not isinstance(dep, Deployment):
        raise LlmsimError(f"simulate needs a Deployment, got {type(dep).__name__}", hint="e.g. Deployment('llama-3.1-8b', Pool('h100-sxm', tp=2))")
    if not isinstance(wl, Workload):
        raise LlmsimError(f"simulate needs a Workload, got {type(wl).__name__}",
                          hint="build one with make_workload(...) or load_trace(...)")
    check_bool("streaming", streaming)
    check_bool("keep_itl", keep_itl)
    if progress is not None and not callable(progress):
        raise LlmsimError(f"progress must be a function (done, total) or None, got {progress!r}")
    for name in ("pool", "prefill", "decode"):
        v = getattr(dep, name)
        if not (isinstance(v, Pool) or (v is None and name != "pool")):
            raise LlmsimError(f"Deployment.{name} must be a Pool{'' if name == 'pool' else ' or None'}, got {v!r}",
                              hint=f"e.g. {name}=Pool('h100-sxm', tp=2)")
    spec = dep.model if isinstance(dep.model, ModelSpec) else get_model(dep.model)
    be = get_backend(dep.backend)
    prec = Precision.make(dep.weight_dtype, dep.act_dtype, dep.kv_dtype)
    if dep.preemption not in ("recompute", "swap"):
        raise LlmsimError(f"unknown preemption mode {dep.preemption!r}", hint="use recompute or swap")
    for name in ("allreduce_norm_fusion", "overlap_scheduling"):  # engine behaviours forced on / off
        v = getattr(dep, name)
        if v is not None and not isinstance(v, (bool, np.bool_)):
            raise LlmsimError(f"{name} must be True, False or None, got {v!r}",
                              hint="True / False force it on or off; None (the default) follows the backend")
    check_ep_imbalance(dep.ep_imbalance)
    if dep.kv_reserve_output is not None:
        _check_fraction("kv_reserve_output", dep.kv_reserve_output,
                        "0 admits while prompts fit and preempts (vLLM), 1 never evicts (TRT-LLM's GUARANTEED_NO_EVICT)")
    fe_tok = be.frontend_s_per_token if dep.frontend_s_per_token is None else dep.frontend_s_per_token
    _check_seconds("frontend_s_per_token", fe_tok, "API-server seconds per prompt token before a request reaches an engine (e.g. 1e-6); 0 = off")
    handoff_s = be.disagg_handoff_s if dep.disagg_handoff_s is None else dep.disagg_handoff_s
    _check_seconds("disagg_handoff_s", handoff_s, "seconds per prefill -> decode hand-off beyond the KV transfer (e.g. 0.25)")
    if dep.prefill_layer_s is not None:
        _check_seconds("prefill_layer_s", dep.prefill_layer_s,
                       "fixed seconds per model layer of an iteration that runs prefill (e.g. 0.0005); 0 = off")
    if dep.prefill_moe_layer_s is not None:
        _check_seconds("prefill_moe_layer_s", dep.prefill_moe_layer_s,
                       "fixed seconds per MoE layer of an iteration that runs prefill (e.g. 0.0005); 0 = off")
    if dep.prefill_a2a_bw_bytes_s is not None and not (is_number(dep.prefill_a2a_bw_bytes_s)
                                                       and math.isfinite(dep.prefill_a2a_bw_bytes_s) and dep.prefill_a2a_bw_bytes_s >= 0):
        raise LlmsimError(f"prefill_a2a_bw_bytes_s must be a finite number of bytes/s >= 0, got {dep.prefill_a2a_bw_bytes_s!r}",
                          hint="e.g. 300e9 (300 GB/s per GPU); 0 = the collective model's bandwidth")
    if dep.moe_efficiency is not None:
        _check_fraction("moe_efficiency", dep.moe_efficiency,
                        "fraction of the dense GEMM's compute rate the fused-MoE expert GEMMs reach, in (0, 1] (e.g. 0.5)", positive=True)
    _check_int("batch_wait_iters", dep.batch_wait_iters, 0,
               "iterations new prefill work may be held back while decodes run (TRT-LLM batch_wait_timeout_iters); 0 = off")
    _check_fraction("batch_wait_tokens_ratio", dep.batch_wait_tokens_ratio,
                    "held prefill work runs once prompts + decodes reach this share of max_num_batched_tokens")
    _check_int("adp_balance_timeout_iters", dep.adp_balance_timeout_iters, 0,
               "iterations prompts may wait for every attention-DP rank to have one (TRT-LLM attention_dp_config.timeout_iters "
               "with enable_balance; its default once enabled: 50); 0 = off")
    _check_int("adp_balance_batching_iters", dep.adp_balance_batching_iters, 0,
               "extra iterations of batching once every attention-DP rank has a prompt (TRT-LLM attention_dp_config."
               "batching_wait_iters; its default: 10)")
    _check_int("recv_interval_iters", dep.recv_interval_iters, 1,
               "decode iterations between the scheduler's polls for new requests (SGLang --scheduler-recv-interval); 1 = every iteration")
    check_seed(dep.seed)
    _check_engine_limits(dep)
    if dep.spec_decoding is not None:
        if not isinstance(dep.spec_decoding, SpecDecoding):
            raise LlmsimError(f"Deployment.spec_decoding must be a SpecDecoding or None, got {dep.spec_decoding!r}",
                              hint="e.g. SpecDecoding('mtp', num_draft_tokens=3, accepted_per_step=1.9)")
        dep.spec_decoding.check_model(spec)
        decoding = dep.decode if dep.disaggregated else dep.pool  # (a missing decode pool is refused below)
        if decoding is not None and decoding.pp > 1:
            raise LlmsimError("speculative decoding with pipeline parallelism (pp > 1) is not modelled",
                              hint="use tp / ep / attention DP for the decoding pool, or drop --spec-decoding")
    n = len(wl)
    progress_every = max(1, min(1000, n // 100))  # about every 1% of the run, at most every 1,000 completions
    if n > MAX_REQUESTS:
        raise LlmsimError(f"{n} requests are more than one simulation handles ({MAX_REQUESTS})", hint="split the workload")
    totals = wl.input_len + wl.output_len
    longest = int(totals.max())
    if longest > spec.max_position_embeddings:
        over = int(np.count_nonzero(totals > spec.max_position_embeddings))
        first = int(np.argmax(totals > spec.max_position_embeddings))
        raise LlmsimError(
            f"{over} of the {n} requests exceed the {spec.max_position_embeddings:,}-token context of {spec.name}: the longest "
            f"has {longest:,} tokens (input + output); the first is request {first} "
            f"({int(wl.input_len[first]):,} + {int(wl.output_len[first]):,} tokens{', in arrival order' if wl.arrival_s is not None else ''})",
            hint=f"--max-len {spec.max_position_embeddings} drops longer trace rows and clips sampled lengths "
                 "(Workload max_len), or lower the lengths, or choose a longer-context model",
        )

    # exact: state for every request (slot = request id); streaming: recycled slots, metrics on the fly
    if streaming:
        sink: StreamingSummary | None = StreamingSummary(wl.warmup, slo, closed_loop=wl.concurrency is not None)
        reqs = Requests.recycled(wl.hash_ids is not None, wl.hash_block_tokens)
    else:
        sink = None
        reqs = Requests(wl.input_len, wl.output_len, wl.hash_ids, wl.hash_block_tokens)
    acquire = reqs.acquire
    # Python ints per arrival, cheaply (an ndarray is a buffer; numpy's stubs say so only on Python >= 3.12)
    inp_len, out_len = memoryview(wl.input_len), memoryview(wl.output_len)  # type: ignore[arg-type]
    hashes = wl.hash_ids
    done_slots: list[int] = []  # streaming: finished, metrics not taken yet (their slots still held)
    # closed loop without warm-up: the first round's requests (ids < concurrency), for the start-up
    # burst's share of the TTFT (`_first_round`); streaming keeps their slots until they finish
    first_round = int(wl.concurrency) if wl.concurrency is not None and wl.warmup == 0 else 0
    first_slots: set[int] = set()
    first_ttft_s: list[float] = []

    def record() -> None:  # streaming: hand the finished requests' metrics to the sink, free their slots
        assert sink is not None
        sink.add(*reqs.take(done_slots))
        done_slots.clear()

    itl = ItlHistogram() if keep_itl else None
    # ITL leaves out the warm-up: at the warm-up cut-off (the completion that ends the warm-up,
    # as the summary counts it in both modes, `_warmup_count`) the gaps recorded so far go
    warm_k = _warmup_count(wl.warmup, n)  # completions the summary leaves out as warm-up
    itl_cut = warm_k if itl is not None else 0
    events: list[tuple[float, int, int, int]] = []  # (time, seq, kind, rid) kinds: 0 arrival, 1 KV hand-off, 2 leaves the front end,
    # 3 a closed-loop client is free (rid -1: the request it sends is the next one issued)
    seq = 0
    finished = 0
    issued = 0
    order: list[int] = []  # exact mode: completion order (warm-up exclusion)

    if dep.disaggregated:
        if dep.prefill is None or dep.decode is None:
            raise LlmsimError("disaggregated serving needs both a prefill and a decode pool")
        if dep.pool != Pool():
            raise LlmsimError("a Deployment with prefill and decode pools has no aggregated pool, but `pool` was given too",
                              hint="leave `pool` at its default for disaggregated serving, or drop prefill / decode")
        builds = [_pool_named(role, _build_pool, spec, pool, dep, be, prec, role, step_time_model, longest)
                  for role, pool in (("prefill", dep.prefill), ("decode", dep.decode))]
    else:
        builds = [_build_pool(spec, dep.pool, dep, be, prec, "both", step_time_model, longest)]
    longest_prompt = int(wl.input_len.max())
    for b in builds:
        what = {"both": "", "prefill": "prefill ", "decode": "decode "}.get(b.cfg.role, "")
        cap_need = longest + 1 + math.ceil(b.cfg.seq_state_tokens)
        if b.cfg.kv_capacity_tokens < cap_need:
            kinds = " and ".join(k for k, n in (("linear-attention state", spec.num_linear_layers), ("sliding-window layers' window",
                                                 spec.num_sliding_layers and spec.num_sliding_layers < spec.num_kv_layers)) if n)
            state = f" ({math.ceil(b.cfg.seq_state_tokens)} of them its {kinds})" if b.cfg.seq_state_tokens else ""
            raise LlmsimError(
                f"the KV cache of one {what}engine holds {b.cfg.kv_capacity_tokens} tokens but a request needs {cap_need}{state}",
                hint="use more GPUs per replica, an fp8 KV cache, fewer pipeline stages, or shorter requests",
            )
        given = pool_batched_tokens(b.pool, dep)
        if (b.cfg.role != "decode" and not b.cfg.chunked_prefill and be.rejects_prompt_over_budget
                and given is not None and longest_prompt > given):
            # vLLM refuses to start with a budget under its context length, TRT-LLM rejects the
            # request at submission: neither runs a whole prompt past the budget it was given
            raise LlmsimError(
                f"without chunked prefill a whole prompt must fit one iteration, but a prompt of {longest_prompt} tokens "
                f"exceeds {what}max_num_batched_tokens = {given} ({be.name} would refuse it)",
                hint=f"raise --{what.replace(' ', '-')}max-num-batched-tokens to at least {longest_prompt}, or turn chunked prefill on",
            )

    delay = wl.send_delay_s  # closed-loop client turnaround (or None)
    # each entry engine (replica) has its own API server: when it is next free, and which engine
    # the prompts inside it were routed to
    in_front: dict[int, Engine] = {}

    # disaggregated: the KV hand-offs (`handoff.Handoffs`: the links of both ends, their turn-taking
    # and the TTFT in parts); the engine ids' workers, numbered across pools (pp virtual engines
    # share one), and the decode engine each request's KV is on its way to
    hos = Handoffs(_handoff_parts(builds[0], builds[1]), builds[0].par.dp, builds[1].par.dp, handoff_s,
                   builds[-1].cfg.first_token_here, n if sink is None else None) if dep.disaggregated else None
    worker_of: dict[int, int] = {}
    in_transit: dict[int, Engine] = {}

    def on_finish(rid: int, t: float, e: Engine) -> None:
        nonlocal seq, finished
        if e.cfg.role == "prefill" and reqs.gen[rid] < reqs.out[rid]:
            # hand the KV cache to the decode pool: the router picks the decode engine now (the
            # transfer needs a destination; the request counts as routed there while in flight);
            # it arrives when the links of both ends have carried it, then the front end's fixed
            # hand-off time follows (which holds no link)
            d = decode_router.pick(rid)
            d.in_front += 1
            in_transit[rid] = d
            assert hos is not None  # (a prefill engine: disaggregated)
            arrived = hos.send(rid, t, worker_of[e.eid], worker_of[d.eid], reqs.inp[rid] + 1)
            seq += 1
            heapq.heappush(events, (arrived + handoff_s, seq, 1, rid))
            return
        finished += 1
        reqs.t_finish[rid] = t
        if hos is not None and hos.in_flight:
            hos.done(rid, finished > warm_k, reqs.arrival[rid], reqs.t_sched[rid], reqs.t_first[rid])
        if finished == itl_cut:
            _cut_itl()
        if sink is None:
            order.append(rid)
        else:
            if first_slots and rid in first_slots:  # closed loop, streaming: the start-up burst's TTFTs
                first_slots.discard(rid)
                first_ttft_s.append(reqs.t_first[rid] - reqs.arrival[rid])
            done_slots.append(rid)
            if len(done_slots) >= _RECORD_BATCH:
                record()
        if wl.concurrency is not None and issued < n:
            # the client is free at t; which request it sends is decided when the loop reaches t
            # (kind 3): an engine reports an iteration's completions when it steps, so with several
            # engines a later completion can be reported before an earlier one -- binding the next
            # request here would hand it to the wrong client and, at the end, leave an earlier-free
            # client idle while a later one sends the last request
            seq += 1
            heapq.heappush(events, (t, seq, 3, -1))
        if progress is not None and (finished % progress_every == 0 or finished == n):
            progress(finished, n)

    def _cut_itl() -> None:
        """The warm-up cut-off: drop every token gap recorded so far (binned or still buffered in an
        engine, including the iteration that ends now), so ITL counts only later ones."""
        assert itl is not None  # (itl_cut is 0, never reached, without one)
        itl.reset()
        for e in all_engines:
            e.discard_itl()

    n_eng = n_workers = 0
    for b in builds:
        for _w in range(b.pool.workers):
            w, n_workers = n_workers, n_workers + 1
            # the replica's stages, shared by its virtual engines
            pipe = Pipeline(pp_stage_layers(b.st.model.num_layers, b.par.pp)) if b.par.pp > 1 else None
            for _v in range(b.par.pp):
                b.engines.append(Engine(n_eng, b.st, b.cfg, reqs, on_finish, itl, pipe))
                worker_of[n_eng] = w
                n_eng += 1
    routers = [_Router(b.engines, dep.router) for b in builds]
    fe_free = [0.0] * sum(len(b.engines) for b in builds)
    entry, decode_router = routers[0], routers[-1]  # (aggregated: one router, both)
    all_engines = [e for b in builds for e in b.engines]
    for e in all_engines:  # open-loop completions queue nothing (closed-loop ones the next request)
        e.finish_queues_events = wl.concurrency is not None or e.cfg.role == "prefill"

    # arrivals: open-loop times as chunks of Python floats (cheap to index; arr_times[next_open]
    # is request open_base + next_open), closed-loop ones as events (each sent its client's
    # turnaround delay after the client is free, if the workload has one)
    all_open = wl.arrival_s if wl.arrival_s is not None else np.empty(0)  # (closed loop: none)
    n_all_open = all_open.size
    arr_times: list[float] = all_open[:_ARRIVAL_CHUNK].tolist()
    n_open = len(arr_times)
    next_open = open_base = 0
    if wl.concurrency is not None:
        for i in range(min(wl.concurrency, n)):
            seq += 1
            heapq.heappush(events, (0.0 if delay is None else float(delay[i]), seq, 0, i))
        issued = min(wl.concurrency, n)

    active: list[tuple[float, int]] = []  # (wake time, engine id)
    is_active = [False] * len(all_engines)

    def next_arrival_time() -> float:
        t1 = events[0][0] if events else math.inf
        t2 = arr_times[next_open] if next_open < n_open else math.inf
        return t1 if t1 < t2 else t2

    def wake(e: Engine, t: float) -> None:
        if not is_active[e.eid]:
            is_active[e.eid] = True
            heapq.heappush(active, (max(t, e.busy_until), e.eid))

    while True:
        t_ev = events[0][0] if events else math.inf
        t_open = arr_times[next_open] if next_open < n_open else math.inf
        t_arr = t_ev if t_ev < t_open else t_open
        t_eng = active[0][0] if active else math.inf
        if t_arr == math.inf and t_eng == math.inf:
            break
        if t_arr <= t_eng:
            if t_open <= t_ev:
                rid, kind, t = open_base + next_open, 0, t_open
                next_open += 1
                if next_open == n_open and open_base + n_open < n_all_open:
                    open_base += n_open
                    arr_times = all_open[open_base:open_base + _ARRIVAL_CHUNK].tolist()
                    n_open, next_open = len(arr_times), 0
            else:
                t, _s, kind, rid = heapq.heappop(events)
                if kind == 3:  # a closed-loop client is free: it sends the next request (after its turnaround)
                    if issued == n:  # every request sent: the client stays idle
                        continue
                    rid, kind = issued, 0
                    issued += 1
                    if delay is not None:
                        seq += 1
                        heapq.heappush(events, (t + float(delay[rid]), seq, 0, rid))
                        continue
            if kind == 0:
                n_in = inp_len[rid]
                if sink is None:
                    reqs.arrival[rid] = t
                else:  # rid becomes the request's slot
                    first = rid < first_round
                    rid = acquire(rid, t, n_in, out_len[rid], None if hashes is None else hashes[rid])
                    if first:
                        first_slots.add(rid)
                e = entry.pick(rid)
                if fe_tok:  # the replica's front end handles prompts one at a time, in arrival order
                    f = fe_free[e.eid]
                    f = fe_free[e.eid] = (t if t > f else f) + fe_tok * n_in
                    e.in_front += 1
                    in_front[rid] = e
                    seq += 1
                    heapq.heappush(events, (f, seq, 2, rid))
                    continue
            elif kind == 2:  # leaves the front end
                e = in_front.pop(rid)
                e.in_front -= 1
            else:  # a KV hand-off reaches the decode engine picked when it left
                e = in_transit.pop(rid)
                e.in_front -= 1
            e.add(rid, t)
            wake(e, t)
            continue
        t, eid = heapq.heappop(active)
        e = all_engines[eid]
        # step the engine; while nothing else is due before its next step (no arrival at or before
        # its end, no other engine earlier in the (time, eid) order), step it again in place: the
        # same order of events the loop above would produce, without the heap round trip
        t_next = t_arr
        while True:
            if e.idle:
                is_active[eid] = False
                break
            # nothing external happens before the next arrival or another engine's next step
            horizon = active[0][0] if active and active[0][0] < t_next else t_next
            if sink is not None:
                sink.now = t  # completions reported from here on finish at or after t
            # bounded by the horizon, not just the next arrival: another engine's step can route a
            # request here (a closed-loop client's next prompt, a KV hand-off), which must join
            # at this engine's first iteration boundary after it
            end = e.step(t, horizon, horizon)
            if end <= t:  # blocked until something arrives or finishes elsewhere
                is_active[eid] = False
                break
            t_next = next_arrival_time()  # completions may have queued requests (closed loop, hand-offs)
            if t_next <= end or (active and active[0] < (end, eid)):
                heapq.heappush(active, (end, eid))
                break
            t = end

    if finished < n:  # every request completes exactly once; anything else is a simulator bug
        stuck = sum(len(e.waiting) + len(e.incoming) + len(e.swapped) + len(e.running) for e in all_engines)
        raise LlmsimError(f"internal error: {n - finished} of {n} requests never completed ({stuck} still queued or "
                          f"running when the event loop ran dry)",
                          hint="please report this deployment and workload; the results would be wrong")
    for e in all_engines:
        e.flush_itl()
    if done_slots:
        record()
    wall = time.perf_counter() - t_wall
    summary = _summarize(dep, builds, wl, reqs, order, itl, slo, sink, fe_tok, handoff_s, first_round, first_ttft_s)
    if hos is not None:
        summary["kv_handoff"] = hos.summary()
        summary["ttft_parts_ms"] = hos.ttft_parts()
    summary["simulation_wall_s"] = wall
    summary["simulator_build"] = SIMULATOR_BUILD
    warm_ids = np.asarray(order[: _warmup_count(wl.warmup, len(order))], dtype=np.int64)
    return ServeResult(summary, reqs, all_engines, wall, streaming, warm_ids, hos if sink is None else None)


def _warmup_count(warmup: int, completed: int) -> int:
    """Completions excluded as warm-up (exact mode): the first `warmup`, but at least one is counted."""
    return min(warmup, max(completed - 1, 0))


def _check_engine_limits(dep: Deployment) -> None:
    """The Deployment's scheduler, memory and host settings: each None (the backend's) or a valid
    value, never a silently replaced one; disaggregation-only settings only with disaggregation."""
    if dep.max_num_seqs is not None:
        _check_int("max_num_seqs", dep.max_num_seqs, 1, "the most requests an engine runs at once (e.g. 256); None = the backend's")
    if dep.max_num_batched_tokens is not None:
        _check_int("max_num_batched_tokens", dep.max_num_batched_tokens, 1,
                   "the most tokens one engine iteration processes (e.g. 8192); None = the backend's")
    _check_int("block_size", dep.block_size, 1, "tokens per paged KV-cache block (e.g. 16, vLLM's default)")
    if dep.block_size > MAX_BLOCK_SIZE:
        raise LlmsimError(f"block_size must be at most {MAX_BLOCK_SIZE} tokens per KV-cache block, got {dep.block_size}",
                          hint="engines page the KV cache in blocks of 16 (vLLM), 32 (TRT-LLM) or 1 (SGLang) to 256 tokens")
    for name, optional in (("prefix_caching", False), ("static_batching", False), ("chunked_prefill", True), ("mixed_batches", True)):
        check_bool(name, getattr(dep, name), allow_none=optional,
                   hint="a string such as 'no' is not False" + ("; None: the backend's default" if optional else ""))
    for name in ("cpu_overhead_s", "cpu_per_seq_s"):
        if getattr(dep, name) is not None:
            _check_seconds(name, getattr(dep, name), "engine host time per iteration / per running request in seconds "
                                                     "(e.g. 0.0005); None = the backend's")
    if dep.memory_fraction is not None:
        _check_fraction("memory_fraction", dep.memory_fraction,
                        "share of GPU memory the engine may use (e.g. 0.9); None = the backend's", positive=True)
    if dep.first_token_from not in (None, "decode", "prefill"):
        raise LlmsimError(f"first_token_from must be 'decode' or 'prefill', got {dep.first_token_from!r}",
                          hint="'decode': the decode worker streams every token (vLLM / SGLang P/D proxies); "
                               "'prefill': the prefill engine's token is the first one (TRT-LLM's disaggregated server); "
                               "None: the backend's")
    if not dep.disaggregated:
        for name, what in (("first_token_from", "which worker's token the client sees first"),
                           ("disagg_handoff_s", "the prefill -> decode hand-off time")):
            if getattr(dep, name) is not None:
                raise LlmsimError(f"{name} ({what}) only applies to a disaggregated deployment, and this one is aggregated",
                                  hint="drop it, or give prefill and decode pools (CLI: --prefill-* / --decode-* options)")


def _check_fraction(name: str, v, hint: str, positive: bool = False) -> None:
    """A Deployment setting that is a share: a number in [0, 1] ((0, 1] if `positive`); bools are refused."""
    if not is_number(v) or not 0.0 <= v <= 1.0 or (positive and v == 0):
        raise LlmsimError(f"{name} must be in {'(0, 1]' if positive else '[0, 1]'}, got {v!r}", hint=hint)


# the largest KV-cache block (tokens) a Deployment may ask for: engines use 1 to 256
MAX_BLOCK_SIZE = 4096


def check_unused_settings(dep: Deployment, wl: Workload | None = None) -> None:
    """Refuse settings that this deployment would ignore: expert-parallel imbalance without ep > 1,
    MoE settings on a dense model, batch waiting's token ratio without its iterations, attention-DP
    balancing without dp > 1, the prefix-aware router without prefix caching or (given the workload
    `wl`) without prefix hash ids. `simulate` itself leaves such settings inert (a sweep may set one
    for every layout); `llmsim serve` calls this, where a typo'd layout or a dense model would
    otherwise look like a run with them."""
    spec = dep.model if isinstance(dep.model, ModelSpec) else get_model(dep.model)
    pools = [p for p in (dep.prefill, dep.decode) if p is not None] if dep.disaggregated else [dep.pool]
    if dep.ep_imbalance not in (None, 1, 1.0) and all(p.ep == 1 for p in pools):
        raise LlmsimError(f"ep_imbalance ({dep.ep_imbalance!r}) applies to MoE layers run with expert parallelism, but no pool has ep > 1",
                          hint="drop --ep-imbalance, or give the pool an ep degree (--ep / --prefill-ep / --decode-ep)")
    if not spec.is_moe:
        for name, flag in (("moe_efficiency", "--moe-efficiency"), ("prefill_moe_layer_s", "--prefill-moe-layer-us"),
                           ("prefill_a2a_bw_bytes_s", "--prefill-a2a-gbps")):
            if getattr(dep, name) is not None:
                raise LlmsimError(f"{name} applies to mixture-of-experts layers, but {spec.name} is a dense model",
                                  hint=f"drop {flag} (the {name} setting)")
    if dep.prefill_a2a_bw_bytes_s is not None and spec.is_moe and not any(p.dp > 1 and p.ep > 1 for p in pools):
        raise LlmsimError("prefill_a2a_bw_bytes_s sets the all-to-alls of attention-DP + expert-parallel pools, but no pool has "
                          "dp > 1 and ep > 1", hint="drop --prefill-a2a-gbps, or give a pool both (e.g. --dp 8 --ep 8)")
    if dep.batch_wait_tokens_ratio and not dep.batch_wait_iters:
        raise LlmsimError("batch_wait_tokens_ratio only applies while new prefill work is held back (batch_wait_iters > 0)",
                          hint="give --batch-wait-iters N too, or drop --batch-wait-tokens-ratio")
    if dep.adp_balance_timeout_iters and all(p.dp == 1 for p in pools):
        raise LlmsimError("adp_balance_timeout_iters balances prompts over attention data-parallel ranks, but no pool has dp > 1",
                          hint="drop --adp-balance-timeout-iters, or give the pool a dp degree (--dp / --prefill-dp / --decode-dp)")
    if dep.adp_balance_batching_iters and not dep.adp_balance_timeout_iters:
        raise LlmsimError("adp_balance_batching_iters only applies with attention-DP balancing (adp_balance_timeout_iters > 0)",
                          hint="give --adp-balance-timeout-iters N too, or drop --adp-balance-batching-iters")
    if dep.prefill_layer_s is not None:
        for p in pools:
            g = get_gpu(p.gpu)
            if resolve_kernels(dep.kernels, g) is not None:
                raise LlmsimError(f"prefill_layer_s applies to GPUs timed by the roofline, but measured kernel tables time {g.name} "
                                  f"(kernels={dep.kernels!r}), which hold that cost already",
                                  hint="drop --prefill-layer-us, or time the GPU by the roofline with --kernels none")
    if dep.router == "prefix" and not dep.prefix_caching:
        raise LlmsimError("the prefix-aware router sends a prompt where its prefix is cached, but prefix caching is off",
                          hint="drop --no-prefix-caching, or use --router least_outstanding / round_robin")
    if dep.router == "prefix" and wl is not None and wl.hash_ids is None:
        raise LlmsimError("the prefix-aware router matches prompts' prefix hash ids, but this workload has none",
                          hint="replay a trace with hash ids (Mooncake JSONL, or llmsim CSV / JSONL with prefix_hash_ids / "
                               "hash_ids), or use --router least_outstanding / round_robin")


def _check_seconds(name: str, v, hint: str) -> None:
    """A Deployment time setting: a finite number of seconds in [0, MAX_SETTING_S]; bools are refused."""
    if not is_number(v) or not (math.isfinite(v) and 0 <= v <= MAX_SETTING_S):
        raise LlmsimError(f"{name} must be a number of seconds in [0, {MAX_SETTING_S:g}], got {v!r}", hint=hint)


def _check_int(name: str, v, lo: int | None, hint: str) -> None:
    """A Deployment setting that must be an integer (>= lo, if given); bools are refused."""
    if not is_int(v) or (lo is not None and v < lo):
        raise LlmsimError(f"{name} must be an integer{'' if lo is None else f' >= {lo}'}, got {v!r}", hint=hint)


def _handoff_parts(src: _PoolBuild, dst: _PoolBuild) -> HandoffParts:
    """`kv_handoff_parts` between two pools of a deployment: over NVLink only when all their workers
    share one NVLink domain (two 4-GPU prefill workers and a 4-GPU decode worker on 8-GPU nodes
    do not: one prefill worker's hand-offs leave the node)."""
    total = src.pool.gpus_per_worker * src.pool.workers + dst.pool.gpus_per_worker * dst.pool.workers
    return kv_handoff_parts(src.gpu, src.pool.gpus_per_worker, src.cfg.kv_bytes_per_token,
                            dst.gpu, dst.pool.gpus_per_worker, dst.cfg.kv_bytes_per_token, domain_gpus=total)


def _first_arrival(wl: Workload) -> float:
    """When the first request arrives (open loop: the earliest time; closed loop: the first send)."""
    if wl.arrival_s is not None:
        return float(wl.arrival_s[0])
    return float(wl.send_delay_s[:wl.concurrency].min()) if wl.send_delay_s is not None else 0.0


def collective_links(builds: list[_PoolBuild], disaggregated: bool) -> list[dict]:
    """Which link each pool's tensor-parallel and expert-parallel collectives run over
    (`GPUSpec.link`: a group inside the NVLink domain talks over NVLink, one inside a node without
    NVLink over PCIe, a larger one over the scale-out NIC) -- why a tp 16 replica of 8-GPU nodes
    decodes slower than tp 8: its all-reduces cross the network."""
    out = []
    for b, role in zip(builds, ("prefill", "decode") if disaggregated else ("replica",)):
        for group, size in (("tp", b.par.tp), ("ep", b.par.ep)):
            if size > 1:
                bw, _, tier = b.gpu.link(size)
                out.append({"pool": role, "group": group, "gpus": int(size), "link": tier, "bandwidth_gbps": bw / 1e9})
    return out


def _summarize(dep, builds, wl, reqs: Requests, order, itl, slo, sink: StreamingSummary | None,
               frontend_s_per_token: float, handoff_s: float, first_round: int, first_ttft_s: list[float]) -> dict:
    num_gpus = sum(b.pool.workers * b.pool.gpus_per_worker for b in builds)
    engines = [e for b in builds for e in b.engines]
    if sink is None:
        last_finish = float(np.nanmax(np.frombuffer(reqs.t_finish))) if order else None
    else:
        sink.close()
        last_finish = sink.last_finish if sink.num_completed else None
    duration = last_finish - _first_arrival(wl) if last_finish is not None else 0.0
    # energy per pool: its GPUs' power, their number and its engines' busy time (a pool's engines
    # all have the same GPUs, so their plain mean is the pool's); the summary's busy_fraction
    # is the GPU-weighted mean over pools. Over the run (first arrival to last finish) for
    # engine_busy_fraction; over the summary's counted window (after a warm-up) for its energy
    groups = [GpuGroup(b.pool.workers * b.pool.gpus_per_worker, b.gpu.tdp_w, b.gpu.idle_power_w, busy_fraction(b.engines, duration))
              for b in builds]
    busy = mean_busy_fraction(groups)

    def groups_in(start_s: float | None, end_s: float | None) -> list[GpuGroup]:
        if start_s is None or end_s is None:
            return groups
        return [replace(g, busy_fraction=busy_fraction_between(b.engines, start_s, end_s)) for g, b in zip(groups, builds)]

    price = sum(b.gpu.price_per_hour_usd * b.pool.workers * b.pool.gpus_per_worker for b in builds) / num_gpus
    prompt = sum(e.prompt_tokens for e in engines)
    prec = builds[0].st.prec
    ticks0 = builds[0].st.spec_tokens_per_step  # decode ticks per real iteration of the first pool's engines
    extra = {
        "backend": dep.backend,
        # the formats simulated (the CLI's default weight format is the published checkpoint's)
        "weight_dtype": prec.weight, "act_dtype": prec.act, "kv_dtype": prec.kv,
        "preemptions": int(sum(e.num_preemptions for e in engines)),
        "prefix_cache_hit_rate": (sum(e.prefix_hit_tokens for e in engines) / prompt) if prompt else 0.0,
        # time-weighted over the run (first arrival to last finish), idle time included, per engine
        "kv_cache_utilisation_mean": kv_utilisation_mean(engines, _first_arrival(wl), last_finish),
        "kv_cache_utilisation_max": float(max((u for e in engines for _, u in e.kv_samples), default=0.0)),
        "kv_cache_utilisation_timeline": _timeline(engines),
        # the GPU-weighted share of the run the engines were running iterations (busy_fraction:
        # the same over the counted window, which the energy uses; equal without a warm-up)
        "engine_busy_fraction": busy,
        # (with speculative decoding a decode-only iteration counts once per token tick, 1 + accepted per real step)
        "num_iterations": int(sum(e.num_iterations for e in engines)),
        # speculative decoding in the pools that decode (`specdecode`; None: off)
        "spec_decoding": None if dep.spec_decoding is None else {
            **asdict(dep.spec_decoding), "tokens_per_step": dep.spec_decoding.tokens_per_step},
        "kv_capacity_tokens_per_engine": int(builds[-1].cfg.kv_capacity_tokens),
        # host time in every iteration, beyond its kernels (backends.py; the per-sequence part per DP rank)
        "cpu_overhead_per_iteration_s": float(builds[0].st.cpu_overhead_s),
        "cpu_per_seq_s": float(builds[0].st.cpu_per_seq_s),
        # fixed time per model layer of an iteration that runs prefill, on the engine that
        # prefills (0 where measured kernel tables time the GPU, and by default off Blackwell)
        "prefill_layer_s": float(builds[0].st.prefill_layer_s),
        # and per MoE layer (the fused-MoE prefill path; no effect on dense models), likewise --
        # on GPUs with kernel tables, and by default off Blackwell, the backend's prefill_table_moe_layer_s
        "prefill_moe_layer_s": float(builds[0].st.prefill_moe_layer_s),
        # and per layer of a multi-head-latent-attention model (0 for others), roofline-timed Blackwell GPUs only
        "prefill_mla_layer_s": float(builds[0].st.prefill_mla_layer_s),
        # tokens per attention rank up to which the engine that decodes runs each tensor-parallel
        # all-reduce and the RMSNorm after it as one kernel (0: separate norm kernels;
        # `Backend.allreduce_norm_fusion`)
        "fused_norm_tokens": int(builds[-1].st.builder.fused_norm_tokens),
        # the engines' loops schedule the next iteration while one runs: a new request (a KV
        # hand-off on a decode engine) that reaches a busy engine waits one iteration more
        # (`Backend.overlap_scheduling`); one entry per pool (prefill pool first when disaggregated)
        "overlap_scheduling": [bool(b.cfg.overlap_scheduling) for b in builds],
        # expert-parallel load imbalance each pool's MoE layers run with (1.0: balanced, or no EP;
        # `Deployment.ep_imbalance`), prefill pool first when disaggregated
        "ep_imbalance": [float(b.st.builder.ep_imbalance) for b in builds],
        # fused-MoE expert GEMMs: fraction of the dense GEMM's compute rate (1.0 for dense models too;
        # `Backend.moe_efficiency_for`), one entry per pool (prefill pool first when disaggregated)
        "moe_efficiency": [float(b.st.cost.moe_efficiency) for b in builds],
        # bytes/s per GPU the all-to-alls of prefill iterations are held to (0: not capped, or no
        # attention DP + EP; `Backend.prefill_a2a_bw_bytes_s`), one entry per pool
        "prefill_a2a_bw_bytes_s": [float(b.st.prefill_a2a_bw_bytes_s) for b in builds],
        # KV admission: share of each running request's remaining output kept back (0: preempt instead)
        "kv_reserve_output": float(builds[-1].cfg.kv_reserve_output),
        # serial front end (tokenisation) per prompt token, before a request reaches an engine
        "frontend_s_per_token": float(frontend_s_per_token),
        # scheduler of the engine that prefills: token budget per iteration, chunking, and
        # whether decodes share iterations with prefill chunks
        "max_num_batched_tokens": int(builds[0].cfg.max_num_batched_tokens),
        "max_num_seqs": int(builds[0].cfg.max_num_seqs),
        "chunked_prefill": bool(builds[0].cfg.chunked_prefill),
        "mixed_batches": bool(builds[0].cfg.mixed_batches),
        # attention DP: the largest chunk one request takes per iteration (one rank's budget; 0: no
        # cap), and whether requests wait in a queue per rank, each on a random rank
        "max_chunk_tokens": int(builds[0].cfg.max_chunk_tokens),
        "prefill_dp_rank_queues": "random" if builds[0].cfg.random_rank_queues else "shared",
        # TRT-LLM batch waiting: prefill chunks held back up to this many iterations while decodes
        # run, until prompts + decodes reach the ratio x budget (0: off; off with attention DP)
        # (in real iterations: with speculative decoding the engine counts them in token ticks)
        "batch_wait_iters": round(builds[0].cfg.batch_wait_iters / ticks0),
        "batch_wait_tokens_ratio": float(builds[0].cfg.batch_wait_tokens_ratio),
        "adp_balance_timeout_iters": round(builds[0].cfg.adp_balance_timeout_iters / ticks0),
        "adp_balance_batching_iters": round(builds[0].cfg.adp_balance_batching_iters / ticks0),
        # SGLang receive interval: decode iterations between the scheduler's polls for new requests (1: every one)
        "recv_interval_iters": max(1, round(builds[0].cfg.recv_interval_iters / ticks0)),
    }
    if dep.disaggregated:
        extra["first_token_from"] = "decode" if builds[-1].cfg.first_token_here else "prefill"
        extra["disagg_handoff_s"] = float(handoff_s)
        # the scheduler keys above are the prefill pool's (kv_capacity_tokens_per_engine the decode
        # pool's); each pool's own, prefill first
        extra["pools"] = [_pool_settings(b) for b in builds]
    # the workload as simulated: its description and, open loop, the arrival rate it realised
    extra["workload"] = wl.describe()
    extra["collective_links"] = collective_links(builds, dep.disaggregated)
    common = {"itl": itl, "num_gpus": num_gpus, "gpu_groups": groups_in, "price_per_gpu_hour_usd": price, "extra": extra}
    if sink is not None:
        out = sink.summary(len(wl), **common)
    else:
        # metrics in completion order so warm-up exclusion drops the first completions
        idx = np.array(order, dtype=np.int64)
        warm = _warmup_count(wl.warmup, len(idx))
        col = {k: np.frombuffer(getattr(reqs, k))[idx] for k in ("arrival", "t_first", "t_finish", "t_sched")}
        inp, out_tok = np.frombuffer(reqs.inp, dtype=np.int64)[idx], np.frombuffer(reqs.out, dtype=np.int64)[idx]
        out = summarize(col["arrival"], col["t_first"], col["t_finish"], inp, out_tok, first_scheduled_s=col["t_sched"], warmup=warm,
                        slo=slo, closed_loop=wl.concurrency is not None, **common)
        # exact mode: request id = send order, so the first round is ids 0 .. first_round - 1
        first_ttft_s = (np.frombuffer(reqs.t_first)[:first_round] - np.frombuffer(reqs.arrival)[:first_round]).tolist()
    if first_round:
        out["closed_loop_first_round"] = _first_round(first_ttft_s, out)
    return out


def _pool_settings(b: _PoolBuild) -> dict:
    """One pool's layout and scheduler settings, for the summary."""
    c = b.cfg
    return {"role": c.role, "gpu": b.gpu.name, "workers": int(b.pool.workers), "tp": int(b.par.tp), "pp": int(b.par.pp),
            "dp": int(b.par.dp), "ep": int(b.par.ep), "max_num_seqs": int(c.max_num_seqs),
            "max_num_batched_tokens": int(c.max_num_batched_tokens), "chunked_prefill": bool(c.chunked_prefill),
            "kv_capacity_tokens_per_engine": int(c.kv_capacity_tokens)}


def _first_round(first_ttft_s: list[float], summary: dict) -> dict | None:
    """Closed loop without warm-up: how much of the mean TTFT the start-up burst makes. The first
    round is the first `concurrency` requests, which the clients send together at t = 0, so they
    queue behind each other's prompts; later requests arrive as others finish. At high
    concurrency the first round can dominate the mean TTFT of a short benchmark (10 requests per
    client, InferenceMAX's recipe). `first_ttft_s`: the first round's TTFTs; the rest comes from
    the summary's TTFT mean over all its (counted) requests. None when there is no later request
    or a TTFT is missing."""
    c, n, mean_ms = len(first_ttft_s), summary["num_requests"], summary["ttft_ms"].get("mean")
    first_s = math.fsum(first_ttft_s)
    if c == 0 or n <= c or mean_ms is None or not math.isfinite(first_s):
        return None
    total_s = mean_ms * 1e-3 * n
    return {"requests": c, "ttft_ms_mean": first_s / c * 1e3, "later_ttft_ms_mean": (total_s - first_s) / (n - c) * 1e3,
            "share_of_ttft_mean": first_s / total_s if total_s > 0 else 0.0}


def busy_fraction_between(engines: list[Engine], start_s: float, end_s: float) -> float:
    """Mean share of [start_s, end_s] the engines spent running iterations. Each engine's busy
    time is sampled at iteration ends with its KV utilisation (`Engine.busy_samples`, every
    iteration until there are many); between two samples the busy time is taken as packed
    against the later one (exact where every iteration is sampled: an iteration ends at its
    sample), so an idle gap before an iteration stays idle."""
    if end_s <= start_s or not engines:
        return 0.0
    total = 0.0
    for e in engines:
        t = np.array([x[0] for x in e.kv_samples] + [max(e.busy_until, 0.0)])
        b = np.array(list(e.busy_samples) + [e.busy_s])
        total += _busy_at(t, b, end_s) - _busy_at(t, b, start_s)
    return min(1.0, max(0.0, total / (len(engines) * (end_s - start_s))))


def _busy_at(t: np.ndarray, b: np.ndarray, at_s: float) -> float:
    """Busy seconds up to `at_s` from samples (t, cumulative busy b) at iteration ends."""
    j = int(np.searchsorted(t, at_s, side="left"))  # the first sample at or after at_s
    if j >= t.size:
        return float(b[-1])
    before = float(b[j - 1]) if j > 0 else 0.0
    return max(before, float(b[j]) - (float(t[j]) - at_s))


def busy_fraction(engines: list[Engine], duration_s: float) -> float:
    """Mean share of `duration_s` the engines spent running iterations (0 for an empty window)."""
    if duration_s <= 0 or not engines:
        return 0.0
    return min(1.0, sum(e.busy_s for e in engines) / (len(engines) * duration_s))


def kv_utilisation_mean(engines: list[Engine], start_s: float, end_s: float | None) -> float:
    """Time-weighted mean KV-cache utilisation over [start_s, end_s], averaged over engines: each
    engine's utilisation integral (linear across an iteration, held between iterations, 0 before
    its first) over the window's length; 0 for an empty window."""
    if end_s is None or end_s <= start_s or not engines:
        return 0.0
    return min(1.0, sum(e.kv_area_s for e in engines) / (len(engines) * (end_s - start_s)))


def _timeline(engines: list[Engine], points: int = 100) -> list[list[float]]:
    """[time_s, KV utilisation] at up to `points` bin centres: the time-weighted mean over each bin
    (from the engines' utilisation integrals at their sampled iteration ends, interpolated),
    averaged over engines."""
    ts = [t for e in engines for t, _ in e.kv_samples]
    if not ts:
        return []
    t0, t1 = min(ts), max(ts)
    if t1 <= t0:
        return [[t0, float(np.mean([u for e in engines for _, u in e.kv_samples]))]]
    edges = np.linspace(t0, t1, points + 1)
    area = np.zeros(points + 1)
    for e in engines:
        if e.kv_samples:
            t = np.concatenate([[0.0], [x[0] for x in e.kv_samples]])
            a = np.concatenate([[0.0], e.kv_area_samples])
            area += np.interp(edges, t, a)
    u = np.diff(area) / np.diff(edges) / len(engines)
    mids = 0.5 * (edges[:-1] + edges[1:])
    return [[float(a), float(b)] for a, b in zip(mids, np.clip(u, 0.0, 1.0))]
