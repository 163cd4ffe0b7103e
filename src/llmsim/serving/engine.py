"""One serving engine replica: iteration-level scheduling over a paged KV cache.

What it models (vLLM / SGLang / TRT-LLM style):
- continuous batching with `max_num_seqs` running sequences and a `max_num_batched_tokens`
  token budget per iteration;
- chunked prefill (Sarathi-Serve): decodes first (one token each), then prefill chunks of
  partially prefilled requests, then new requests, all in one iteration; without mixed
  batches (`mixed_batches=False`, SGLang's default) prompts are still chunked at the token
  budget but an iteration is either prefill-only (prefill first) or decode-only; without
  chunked prefill every prompt is prefilled whole in one iteration, beside the decodes where
  batches mix (vLLM V1, TRT-LLM in-flight batching without chunked context) or in a
  prefill-only iteration where they do not (SGLang; vLLM V0);
- static batching (baseline): a batch is admitted only when the previous one has finished;
- batch waiting (TRT-LLM's batch_wait_timeout_iters / batch_wait_max_tokens_ratio, off by
  default): while decodes run, admitted prefill work is held back for up to a number of
  iterations until enough prompt tokens have gathered (`EngineConfig.batch_wait_iters`);
- attention-DP balance (TRT-LLM's attention_dp_config.enable_balance, off by default): with
  dp attention-DP ranks, context work waits until every rank has some (dp scheduled prompts),
  or a free-running counter of iterations reaches the timeout, or a rank has no decodes
  (`EngineConfig.adp_balance_timeout_iters`);
- receive intervals (SGLang's --scheduler-recv-interval, 1 = off by default): while only decodes
  run, the scheduler takes new requests in every N decode iterations, right after a prefill
  iteration, or at once when idle (`EngineConfig.recv_interval_iters`);
- overlap scheduling (SGLang's overlap scheduler, TRT-LLM's PyExecutor overlap loop, vLLM's async
  scheduling): the scheduler picks iteration k+1's batch while iteration k runs, so a request
  that reaches a busy engine during iteration k is first scheduled in k+2, one iteration later
  than with a blocking loop (`EngineConfig.overlap_scheduling`);
- paged KV cache of `kv_capacity_tokens` in blocks of `block_size` tokens; when the next
  iteration needs more blocks than are free, the most recently admitted request is
  preempted (LIFO, as vLLM): 'recompute' drops its KV and re-prefills prompt + generated
  tokens later; 'swap' copies its KV to host memory over PCIe and back; admission may keep
  back KV for the running requests' future output tokens (`EngineConfig.kv_reserve_output`:
  TRT-LLM's GUARANTEED_NO_EVICT reserves all of it and never preempts, SGLang part of it);
- prefix caching by block hash (Mooncake `hash_ids`): cached leading blocks are not prefilled
  and are shared, not copied, by the requests that found them; blocks no running request holds
  stay cached in the free KV blocks, evicted least recently used first;
- disaggregation roles: 'prefill' engines stop after the first token, 'decode' engines take
  requests whose KV arrives from a prefill engine.

Speed: a decode-phase request's progress is implied by the engine's decode tick counter
(tokens = tokens at join + ticks since join), completions come from a heap keyed by target
tick, and a run of decode-only iterations with an unchanged batch is advanced in closed form
(`StepTimeModel.decode_run`) up to the next event (a completion, the next arrival that could
be admitted, or KV exhaustion). No per-request work happens per iteration. A macro step
(`Engine.step`) runs on while the event loop guarantees nothing else happens first: a long
prompt's full-budget chunks, its last chunk, and the decode runs after it (`Engine._quiet`
checks that each continuation is the step the event loop would have started). Token gaps
for the ITL histogram are buffered in flat arrays and binned with numpy.

KV accounting: a sequence of L tokens holds ceil(L / block_size) blocks; for the decode set
the total is tracked as (sum of contexts + n * (block_size - 1) / 2) / block_size, i.e. on
average half a block of slack per sequence, less the cached prefix blocks the running requests
share (`Engine._shared_tokens`). A hybrid model's linear-attention layers add a
fixed state per sequence (`EngineConfig.seq_state_tokens`, in KV-token equivalents), held
from admission to release like a prompt's blocks.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .steptime import StepTimeModel

_ITL_BATCH = 4096  # token-gap samples buffered per engine before they are binned (numpy) into the histogram
# ITL counts per streamed chunk under speculative decoding, whose chunks are 1 / T of a decode tick
_ITL_SPEC_UNITS = 1000


@dataclass
class EngineConfig:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    # decodes ride in the same iteration as prefill chunks, or as whole prompts without
    # chunked prefill (vLLM V1, TRT-LLM); False: prefill batches of at most
    # max_num_batched_tokens run alone and decodes wait (SGLang without --enable-mixed-chunk)
    mixed_batches: bool = True
    # the largest prefill chunk one request takes in an iteration (0: the whole token budget).
    # With attention DP each rank schedules its own share of the budget and a request's chunk
    # runs on one rank, so a pooled dp-rank engine caps chunks at max_num_batched_tokens / dp
    max_chunk_tokens: int = 0
    # attention DP with a queue per rank and each new request sent to a random rank (SGLang's PD
    # prefill server: the DP rank follows the router's random bootstrap room), each rank taking
    # at most max_chunk_tokens per iteration from its own queue; 0: one shared queue, any rank
    # takes any request (the engine balances)
    random_rank_queues: int = 0
    rank_seed: int = 0  # with random_rank_queues: the draws are a fixed stream per (rank_seed, engine id)
    static_batching: bool = False
    block_size: int = 16
    kv_capacity_tokens: int = 1 << 20
    preemption: str = "recompute"  # or "swap"
    prefix_caching: bool = True
    swap_bandwidth_bytes_per_s: float = 25e9
    kv_bytes_per_token: float = 0.0  # per GPU, for swap time and KV transfer
    # fixed state every admitted sequence holds whatever its length (a hybrid model's Gated
    # DeltaNet layers: recurrent + conv state), in tokens of KV cache of the same bytes
    seq_state_tokens: float = 0.0
    role: str = "both"  # both | prefill | decode
    # admission keeps back KV for the running requests' future output tokens: this fraction of
    # each one's remaining output (at most kv_reserve_cap_tokens of it). 0: vLLM (admit while
    # the prompt fits, preempt when decodes run out of blocks); 1: TRT-LLM's default
    # GUARANTEED_NO_EVICT capacity scheduler (a request is admitted only if its whole
    # prompt + max output fits next to everyone else's); SGLang reserves new_token_ratio (0.7
    # after a retraction) of each remaining output, clipped at 4096 tokens
    kv_reserve_output: float = 0.0
    kv_reserve_cap_tokens: int = 1 << 62
    # batch waiting (TRT-LLM's batch_wait_timeout_iters / batch_wait_max_tokens_ratio, off by
    # default there): in an iteration that would run both decodes and prefill chunks, the
    # chunks are held back (the requests stay admitted; the iteration runs decodes only) until
    # the scheduled requests' whole prompt tokens plus the decode tokens reach
    # batch_wait_tokens_ratio x max_num_batched_tokens, or they have been held back
    # batch_wait_iters iterations in a row. 0: off. Its PyExecutor skips it with attention DP
    batch_wait_iters: int = 0
    batch_wait_tokens_ratio: float = 0.0
    # attention-DP balance (TRT-LLM's attention_dp_config with enable_balance: true; PyExecutor
    # _balance_adp_requests), for an engine of adp_ranks > 1 attention-DP ranks. Every iteration:
    # if every rank has a context request scheduled -- here: the iteration schedules >= adp_ranks
    # prompts, as its balanced request assignment gives -- the counter restarts and the context
    # work runs (after adp_balance_batching_iters more iterations in a row while every rank also
    # has decodes: batching_wait_iters); otherwise the counter adds 1 and the context work is held
    # back (the iteration runs decodes only) unless the counter reaches adp_balance_timeout_iters
    # (it then restarts) or some rank has no decodes (here: fewer than adp_ranks decodes). The
    # counter runs in iterations without any context work too, so a lone prompt waits for the
    # counter's next wrap: on average half the timeout. 0: off (TRT-LLM's default)
    adp_balance_timeout_iters: int = 0
    adp_balance_batching_iters: int = 0
    adp_ranks: int = 1
    # receive interval (SGLang's --scheduler-recv-interval, SchedulerRecvSkipper; 1: off, its
    # default): the scheduler polls for new requests at the top of its loop only when a counter
    # reaches N -- each decode iteration adds 1, a prefill iteration enough to poll at once, an
    # idle loop turn 1 (so an idle engine takes a request in at once); the counter restarts at
    # every poll. A request routed here waits in `Engine.inbox` until then. Not for decode-role
    # engines (their requests come with their KV)
    recv_interval_iters: int = 1
    # decode role: the client's first token comes from this engine's first decode iteration
    # (vLLM / SGLang P/D proxies stream every token from the decode worker), so it generates
    # all output tokens; False: the prefill engine's token is the first (TRT-LLM's disagg server)
    first_token_here: bool = False
    # prefix caching: a prompt block the request computed while the cache already held a copy
    # (another request computed it meanwhile) is freed at once and the cached copy referenced
    # (SGLang's radix cache inserts and frees the duplicate); False: the request keeps its own
    # copy, cached as well once freed (vLLM's block pool)
    prefix_dedup_on_insert: bool = False
    # overlap scheduling: the engine's loop polls for new requests and schedules iteration k+1 at
    # the start of iteration k, then waits for k's results (SGLang's event_loop_overlap, TRT-LLM's
    # _executor_loop_overlap, vLLM's async scheduling). A request (or, on a decode engine, a KV
    # hand-off) that arrives while an iteration runs therefore joins the iteration after next; one
    # that reaches an engine with nothing to run is taken at once. False: a blocking loop, where it
    # joins the next iteration
    overlap_scheduling: bool = False


_VER_STEP = 1 << 32  # a request's version is (times its heap entry was invalidated) * _VER_STEP + request id
MAX_REQUESTS = _VER_STEP  # request ids must fit the low 32 bits of a version


def _view(a: array) -> np.ndarray:
    """A numpy view of an `array` (float64 or int64); drop it before the array grows."""
    return np.frombuffer(a, dtype=np.float64 if a.typecode == "d" else np.int64)


class _RankQueues:
    """The waiting requests of an engine with one queue per attention-DP rank: a new request goes
    to a random rank (a fixed-seed stream, so runs repeat) and stays there. Looks like a deque
    of all waiting requests to the rest of the engine (truth, len, append, appendleft)."""

    def __init__(self, dp: int, seed: str):
        import random

        self.dp = dp
        self.queues: list[deque[int]] = [deque() for _ in range(dp)]
        self.rank: dict[int, int] = {}
        self._n = 0
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def append(self, rid: int) -> None:
        k = self.rank[rid] = self._rng.randrange(self.dp)
        self.queues[k].append(rid)
        self._n += 1

    def appendleft(self, rid: int) -> None:
        self.queues[self.rank[rid]].appendleft(rid)
        self._n += 1

    def popleft_from(self, k: int) -> int:
        self._n -= 1
        return self.queues[k].popleft()


class Requests:
    """Per-request state shared by all engines of a simulation: compact arrays indexed by slot.

    Exact mode (`Requests(input_len, output_len, ...)`): one slot per request, slot = request id.
    Streaming mode (`Requests.recycled(...)`): a request takes a free slot when it arrives
    (`acquire`) and gives it back when its metrics are taken after it finished (`take`, for a
    batch of finished requests); the arrays grow in place (engines keep references to them) to
    the peak number of requests in flight or finished and not yet taken.

    `ver` versions a request's decode-heap entries: bumping it by `_VER_STEP` invalidates them.
    Its low 32 bits hold the request id, so heap ties order by (bumps, request id) whatever the
    slot, and an entry left in a heap by a slot's earlier request never matches a later one.
    `hash_ids` (prefix caching) is indexed by slot too: the workload's list in exact mode, a
    per-slot list filled by `acquire` in streaming mode.
    """

    _FIELDS: ClassVar[dict[str, tuple[str, Any]]] = {  # name: (typecode, initial value)
        "inp": ("q", 0), "out": ("q", 0),
        "arrival": ("d", math.nan), "t_sched": ("d", math.nan), "t_first": ("d", math.nan), "t_finish": ("d", math.nan),
        "gen": ("q", 0),  # tokens generated before the current phase
        "ptotal": ("q", 0),  # prompt tokens of the current prefill attempt
        "prefilled": ("q", 0),  # of ptotal, already in the KV cache
        "cached": ("q", 0),  # prompt tokens served from the prefix cache
        "tick0": ("q", 0),  # decode tick at which it joined the decode set
        "ver": ("q", 0),  # bumps invalidate heap entries (see the class docstring)
        "preemptions": ("q", 0),
        "engine": ("q", -1),
        "t_last": ("d", math.nan),  # preempted (or handed off): when its latest token came out
    }
    # what a freed slot must reset: the fields engines read before they write them (the others
    # are always written first: inp, out, ver, arrival by `acquire`; ptotal and engine by
    # `Engine.add`; tick0 on joining the decode set; cached on admission; t_first at the first
    # token; t_finish at the end)
    _RESET: ClassVar[tuple[str, ...]] = ("t_sched", "gen", "prefilled", "preemptions")
    # the `_FIELDS` arrays, declared so that the compiled build (setup.py) knows them
    inp: array
    out: array
    arrival: array
    t_sched: array
    t_first: array
    t_finish: array
    gen: array
    ptotal: array
    prefilled: array
    cached: array
    tick0: array
    ver: array
    preemptions: array
    engine: array
    t_last: array

    def __init__(self, input_len, output_len, hash_ids=None, hash_block_tokens: int = 512):
        n = len(input_len)
        self._alloc(n, hash_ids, hash_block_tokens, given={
            "inp": array("q", np.asarray(input_len, dtype=np.int64).tobytes()),
            "out": array("q", np.asarray(output_len, dtype=np.int64).tobytes()),
            "ver": array("q", np.arange(n, dtype=np.int64).tobytes()),
        })

    @classmethod
    def recycled(cls, prefix_hashes: bool, hash_block_tokens: int = 512, slots: int = 64) -> Requests:
        """Empty slot arrays for streaming mode (`prefix_hashes`: keep per-slot hash ids)."""
        r = cls([], [], [] if prefix_hashes else None, hash_block_tokens)
        r._grow(slots)
        return r

    def _alloc(self, n: int, hash_ids, hash_block_tokens: int, given: dict[str, array] | None = None) -> None:
        """n slots of every field, at its initial value unless `given` (name -> array of n)."""
        self.n = n
        self.hash_ids = hash_ids
        self.hash_block_tokens = hash_block_tokens
        self._free: list[int] = []  # streaming mode: free slots, taken from the end
        given = given or {}
        for name, (code, v) in self._FIELDS.items():
            setattr(self, name, given[name] if name in given else array(code, [v]) * n)

    def _grow(self, k: int) -> None:
        """k more slots, appended in place."""
        for name, (code, v) in self._FIELDS.items():
            getattr(self, name).extend(array(code, [v]) * k)
        if self.hash_ids is not None:
            self.hash_ids.extend([None] * k)
        self._free.extend(range(self.n + k - 1, self.n - 1, -1))  # lowest slot first
        self.n += k

    def acquire(self, rid: int, arrival: float, input_len: int, output_len: int, hash_ids=None) -> int:
        """Streaming mode: a free slot (in a fresh request's state) for request `rid` arriving at `arrival`."""
        if not self._free:
            self._grow(self.n)
        s = self._free.pop()
        self.arrival[s], self.inp[s], self.out[s], self.ver[s] = arrival, input_len, output_len, rid
        if self.hash_ids is not None:
            self.hash_ids[s] = hash_ids
        return s

    def take(self, slots: list[int]) -> tuple[np.ndarray, ...]:
        """Streaming mode: (arrival, t_first, t_finish, t_sched, inp, out) of the finished
        requests in `slots` (numpy arrays: times float64, tokens int64); their slots are free again."""
        s = np.array(slots, dtype=np.int64)
        cols = tuple(_view(a)[s] for a in (self.arrival, self.t_first, self.t_finish, self.t_sched, self.inp, self.out))
        for name in self._RESET:  # fresh for the next request (one numpy pass per field, not per request)
            _view(getattr(self, name))[s] = self._FIELDS[name][1]
        if self.hash_ids is not None:
            for k in slots:
                self.hash_ids[k] = None
        self._free.extend(slots)
        return cols

    @property
    def in_flight(self) -> int:
        """Streaming mode: slots in use (exact mode: all)."""
        return self.n - len(self._free)


def pp_stage_layers(num_layers: int, pp: int) -> list[int]:
    """Model layers per pipeline stage, as vLLM splits them (`get_pp_indices`, which SGLang's
    `distributed/utils.py` keeps): num_layers // pp each, the remainder one apiece to the stages
    before the last, which also runs the LM head. TRT-LLM (`Mapping.pp_layers`) gives the
    remainder to the first stages: the same stage sizes, the last stage again the smallest."""
    if not 1 <= pp <= num_layers:
        raise ValueError(f"pp={pp} must be between 1 and the model's {num_layers} layers")
    layers = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        layers[-i] += 1
    return layers


class Pipeline:
    """The pipeline stages of one replica with pp > 1, shared by its pp virtual engines.

    A virtual engine's iteration is one micro-batch; after its host time (scheduling, input
    preparation, output handling: the engine's CPU, overlapped with the stages' work on other
    micro-batches) it passes the stages in order, each stage working on one micro-batch at a
    time, first come first served: it enters stage s when it has left stage s - 1 and the
    micro-batch ahead of it has left stage s. Stage s takes its layers' share of the
    iteration's layer work (`layers[s]` of the model's layers, `pp_stage_layers`; the
    embedding, the activations' sends and the per-layer fixed prefill time are spread with the
    layers), and the last stage also runs the LM head (final norm, LM head GEMM, logits
    gather) -- so with equal micro-batches back to back the slowest stage sets the pace. A long
    prefill micro-batch holds up the other virtual engines' decodes stage by stage, as in
    vLLM / SGLang pipeline parallelism, where unbalanced micro-batches leave pipeline bubbles.
    `log`, if a list, gets (stage, enter s, leave s) per stage visit.
    """

    def __init__(self, layers: list[int]):
        if not layers or min(layers) < 1:
            raise ValueError(f"every pipeline stage needs at least one layer, got {layers}")
        total = sum(layers)
        self.stages = len(layers)
        self.share = [n / total for n in layers]  # each stage's fraction of the layer work
        self.free_at_s = [0.0] * self.stages  # when each stage finishes the micro-batches given to it so far
        self.log: list[tuple[int, float, float]] | None = None

    def through(self, start: float, work_s: float, host_s: float = 0.0, head_s: float = 0.0) -> float:
        """A micro-batch of `work_s` seconds of pipeline latency, `host_s` of them on the host and
        `head_s` in the LM head, scheduled at `start`: when it leaves the last stage."""
        if host_s > work_s:
            host_s = work_s
        if head_s > work_s - host_s:
            head_s = work_s - host_s
        body = work_s - host_s - head_s
        free, share, log = self.free_at_s, self.share, self.log
        last = self.stages - 1
        t = start + host_s
        for s in range(self.stages):
            f = free[s]
            enter = t if t > f else f
            t = enter + body * share[s]
            if s == last:
                t += head_s
            free[s] = t
            if log is not None:
                log.append((s, enter, t))
        return t


class Engine:
    def __init__(self, eid: int, st: StepTimeModel, cfg: EngineConfig, reqs: Requests, on_finish, itl=None,
                 pipe: Pipeline | None = None):
        self.eid, self.st, self.cfg, self.r = eid, st, cfg, reqs
        # pp > 1: the replica's stages, shared with its other virtual engines (`Pipeline`); every
        # step is then one iteration, so micro-batches take the stages in the order they start
        self.pipe = pipe
        self.mixing = cfg.mixed_batches  # decodes share iterations with prefill chunks (or whole prompts)
        # per-request chunk cap (attention DP: one rank's budget); no cap without chunking
        cap = cfg.max_chunk_tokens if cfg.chunked_prefill and cfg.max_chunk_tokens > 0 else 0
        self._chunk_cap = cap if 0 < cap < cfg.max_num_batched_tokens else 1 << 62
        self.on_finish, self.itl = on_finish, itl
        # token gaps (s) and their counts not yet binned into `itl`; None when ITL is not kept
        self._itl_v: array | None = array("d") if itl is not None else None
        self._itl_c = array("q")
        # speculative decoding (`StepTimeModel.spec_tokens_per_step` > 1): a decode tick is 1 / T of a
        # verify step, whose accepted tokens stream together, so the ITL a benchmark client records
        # is one gap per step (chunk); counts are then in thousandths of a chunk (`_ITL_SPEC_UNITS`)
        self._itl_t: float = st.spec_tokens_per_step
        self._itl_w: int = _ITL_SPEC_UNITS if self._itl_t > 1.0 else 1
        self.waiting: Any = deque()  # new and recompute-preempted requests (a deque, or `_RankQueues`)
        self._ranked = cfg.random_rank_queues > 1 and cfg.role == "prefill" and cfg.chunked_prefill
        if self._ranked:  # per-rank queues (`_RankQueues`); ranks drawn from a fixed-seed stream
            self.waiting = _RankQueues(cfg.random_rank_queues, f"{cfg.rank_seed}:{eid}")
            # each rank's budget: max_chunk_tokens, else an even share of the engine's
            self._chunk_cap = min(self._chunk_cap, max(cfg.max_num_batched_tokens // cfg.random_rank_queues, 1))
        self.swapped: deque[int] = deque()
        self.incoming: deque[int] = deque()  # decode role: requests whose KV has arrived
        self.prefilling: list[int] = []  # admitted, prompt not finished (admission order)
        self.running: list[int] = []  # prefilling + decoding, admission order (LIFO preemption)
        self.heap: list[tuple[int, int, int]] = []  # (target tick, version, rid)
        self.tick = 0
        self.n_dec = 0
        self.dec_base = 0  # sum over decode set of (context at join - tick at join)
        self.pref_tokens = 0  # KV tokens held by prefilling requests
        self.swap_tokens = 0
        self.busy_until = 0.0
        self.busy_s = 0.0
        self.num_iterations = 0
        self.num_preemptions = 0
        self.prefix_hit_tokens = 0
        self.prompt_tokens = 0
        # (iteration end s, KV utilisation then, before its finished requests leave), every
        # `_kv_stride`-th iteration, and the utilisation integral `kv_area_s` at the same ends
        self.kv_samples: list[tuple[float, float]] = []
        self.kv_area_samples: list[float] = []
        self.busy_samples: list[float] = []  # busy_s at each kv sample's time (energy over a window)
        # time integral of KV utilisation (utilisation x s): linear across an iteration, held between
        # iterations; and the utilisation and time at the end of the latest iteration
        self.kv_area_s = 0.0
        self._kv_u = 0.0
        self._kv_t = 0.0
        self._kv_u_end = -1.0  # utilisation at the step's end before its finished requests left (-1: not taken)
        # token gaps that differ from the next decode tick's step time (`_first_gaps`): prefill-only
        # time the decoding requests waited since their last token; (base s, stall at join s,
        # rid) for requests that joined the decode set since then, whose next gap is the tick
        # plus base plus the stall after their join (a hand-off's or swap's wait since their last
        # token; 0 for a first token just made); and requests whose next tick makes their first
        # token (a decode engine's `first_token_here`), which is their TTFT, not a gap
        self._stall_s = 0.0
        self._gap_groups: list[tuple[float, float, int]] = []
        self._gap_drop = 0
        self._no_admit = False  # this step preempted: no admissions (`step`)
        self._kv_stride = 1
        # prefix cache: hash blocks the running requests hold (pinned, with the number of requests
        # holding each: those that computed it, `_cache_insert`, and those that found it cached,
        # `_ref_hits`), and unpinned ones, least recently used first, which live in the free part
        # of the KV cache and are evicted as live KV needs it. Every holder counts the block in its
        # own KV, but only those that computed it hold a copy in memory (at least one copy while
        # anyone holds it): `_own` counts them per block, `_refs` lists each running request's
        # (hash, computed it) and `_shared_tokens` is the KV the holders count more than once,
        # sum over blocks of (holders - max(computed, 1)) x the block's tokens (`_tok`), taken off
        # `blocks_used`
        self._lru: OrderedDict[int, None] = OrderedDict()
        self._pinned: dict[int, int] = {}
        self._own: dict[int, int] = {}
        self._tok: dict[int, int] = {}
        self._refs: dict[int, list[tuple[int, bool]]] = {}
        self._shared_tokens = 0
        self._hash_blocks = max(reqs.hash_block_tokens, 1) / cfg.block_size  # KV blocks per hash block
        self.cap_blocks = cfg.kv_capacity_tokens // cfg.block_size
        # per running sequence: half a block of slack on average, plus any fixed state; a new
        # sequence needs one block of margin plus its state
        self._seq_slack = (cfg.block_size - 1) * 0.5 + cfg.seq_state_tokens
        self._new_seq_blocks = 1.0 + cfg.seq_state_tokens / cfg.block_size
        self.outstanding = 0  # routed here and not finished (router's load signal)
        self.in_front = 0  # routed here, not yet added: in this replica's API server (front end), or KV in flight to this decode engine
        self.finish_queues_events = True  # whether on_finish may queue new events (simulate knows)
        # whether a router reads this engine's `outstanding` to choose among it and others (simulate
        # knows): then a full engine's decode run must not report a completion before the event
        # loop reaches it, or the router would see a free seat that is still taken
        self.routed = False
        self._prefix = reqs.hash_ids is not None and cfg.prefix_caching
        self._first_pending: list[int] = []  # decode role, first_token_here: admitted, first token not yet out
        # sum over running requests of their whole (capped) output in tokens: bounds the reservation
        self._reserve_bound_tokens = 0
        self._held_iters = 0  # batch waiting: iterations in a row the prefill chunks were held back
        self._hold_tokens = cfg.batch_wait_tokens_ratio * cfg.max_num_batched_tokens
        # attention-DP balance: the counter is (iterations run - _adp_anchor) mod the timeout;
        # _adp_batched: iterations held in a row for batching
        self._adp_anchor = 0
        self._adp_batched = 0
        # receive interval: requests routed here that the scheduler has not polled yet, and the
        # iteration count at its last poll (polls then fall every recv_interval_iters decode
        # iterations, and right after every prefill iteration)
        self._recv_n = cfg.recv_interval_iters if cfg.recv_interval_iters > 1 and cfg.role != "decode" else 1
        self.inbox: deque[int] = deque()
        self._recv_anchor = 0
        # overlap scheduling: (arrival time, rid) of requests that arrived while an iteration ran,
        # not yet seen by the scheduler, and the start of the engine's latest iteration (requests
        # that arrived by then were polled when the iteration after it was scheduled)
        self.lagged: deque[tuple[float, int]] = deque()
        self._iter_start_s = 0.0

    # ------------------------------------------------------------------ queries
    @property
    def idle(self) -> bool:
        return not (self.waiting or self.prefilling or self.n_dec or self.swapped or self.incoming or self.inbox
                    or self.lagged)

    def blocks_used(self, extra_decode_ticks: int = 0) -> float:
        B, n = self.cfg.block_size, self.n_dec
        # decode contexts + prefills, a shared cached block once
        toks = self.dec_base + n * (self.tick + extra_decode_ticks) + self.pref_tokens - self._shared_tokens
        return (toks + (n + len(self.prefilling)) * self._seq_slack) / B

    def kv_utilisation(self, used: float = -1.0) -> float:
        """Share of the KV blocks in use (`used`: `blocks_used()` if the caller has it)."""
        return min(1.0, (used if used >= 0.0 else self.blocks_used()) / max(self.cap_blocks, 1))

    def prefix_match_tokens(self, rid: int) -> int:
        """Leading prompt tokens this engine's prefix cache holds for request rid."""
        h = self.r.hash_ids
        if h is None or not self.cfg.prefix_caching:
            return 0
        self._trim_cache()
        ids = h[rid]
        lru, pinned = self._lru, self._pinned
        n = 0
        for x in ids:
            x = int(x)
            if x not in lru and x not in pinned:
                break
            n += 1
        return min(n * self.r.hash_block_tokens, self.r.inp[rid] - 1)

    # ------------------------------------------------------------------ admission
    def add(self, rid: int, now: float) -> None:
        self.outstanding += 1
        r = self.r
        r.engine[rid] = self.eid
        if self.cfg.role != "decode":
            r.ptotal[rid] = r.inp[rid]
        if self.cfg.overlap_scheduling and (self.busy_until > now or (self.busy_until == now and (self.n_dec or self.prefilling))):
            # an iteration is running (or the next one, already scheduled, starts now): the
            # scheduler sees this request only when it schedules the iteration after next.
            # Requests reaching an engine with nothing running -- several at one instant
            # included -- are taken at once
            self.lagged.append((now, rid))
        else:
            self._queue(rid)

    def _queue(self, rid: int) -> None:
        """The scheduler has seen request rid: it waits for admission (decode role: its KV has arrived)."""
        if self.cfg.role == "decode":
            self.incoming.append(rid)
        else:
            (self.inbox if self._recv_n > 1 else self.waiting).append(rid)

    def _unlag(self, now: float) -> int:
        """Overlap scheduling, at an iteration boundary: queue the requests the scheduler polled
        when it scheduled the iteration starting now -- those that arrived by the start of the
        iteration that just ended, or all of them if the engine had nothing running (its loop was
        idle, polling). Returns 1 if some are left for the next boundary, else 0."""
        # (queued work counts here, unlike in `add`: a prefill engine whose last iteration left
        # prompts waiting had already scheduled the next one, while in `add` prompts queued at
        # this same instant must not make the engine look busy to the next one)
        cut = self._iter_start_s
        if self.busy_until < now or not (self.n_dec or self.prefilling or self.waiting or self.swapped or self.incoming):
            cut = math.inf
        lagged = self.lagged
        while lagged and lagged[0][0] <= cut:
            self._queue(lagged.popleft()[1])
        return 1 if lagged else 0

    def _poll(self) -> int:
        """Receive interval: move the inbox to the waiting queue if the scheduler polls at this
        iteration boundary; else return how many decode iterations remain until it does."""
        if not (self.n_dec or self.prefilling):
            # no batch to run on (idle, or only queued prompts): the scheduler's loop turns reach
            # the interval at once, and nothing could otherwise move the count on
            self._recv_anchor = self.num_iterations
        left = (self._recv_anchor - self.num_iterations) % self._recv_n
        if left:
            return left
        while self.inbox:
            self.waiting.append(self.inbox.popleft())
        return 0

    def _join_decode(self, rid: int, gen: int) -> None:
        """Request enters the decode set with `gen` tokens generated (its KV holds inp + gen - 1 tokens)."""
        r = self.r
        r.gen[rid] = gen
        r.tick0[rid] = self.tick
        ctx_next = r.inp[rid] + gen  # context the next decode tick attends to
        self.dec_base += ctx_next - self.tick
        self.n_dec += 1
        heapq.heappush(self.heap, (self.tick + r.out[rid] - gen, r.ver[rid], rid))

    def _leave_decode(self, rid: int) -> int:
        """Remove from the decode set; returns tokens generated so far."""
        r = self.r
        g = r.gen[rid] + self.tick - r.tick0[rid]
        self.dec_base -= r.inp[rid] + r.gen[rid] - r.tick0[rid]
        self.n_dec -= 1
        r.ver[rid] += _VER_STEP  # its heap entry is now stale
        return g

    def _preempt_one(self, now: float) -> float:
        """Preempt the most recently admitted running request; returns swap time to add (s)."""
        rid = self.running.pop()
        self._released(rid)
        r = self.r
        r.preemptions[rid] += 1
        if rid in self._first_pending:
            self._first_pending.remove(rid)
        self.num_preemptions += 1
        if rid in self.prefilling:
            self.prefilling.remove(rid)
            self.pref_tokens -= r.prefilled[rid]
            r.prefilled[rid] = 0
            self.waiting.appendleft(rid)
            return 0.0
        g = self._leave_decode(rid)
        # its latest token: before the prefill-only iterations it has waited through since (`_first_gaps`)
        last = now - self._stall_s
        for i, (base, at, j) in enumerate(self._gap_groups):
            if j == rid:
                last = now - (base + self._stall_s - at)
                del self._gap_groups[i]
                break
        r.t_last[rid] = last
        if self.cfg.preemption == "swap":
            r.gen[rid] = g
            toks = r.inp[rid] + g
            self.swap_tokens += toks
            self.swapped.append(rid)
            return toks * self.cfg.kv_bytes_per_token / self.cfg.swap_bandwidth_bytes_per_s
        # recompute: prompt + generated tokens are prefilled again
        r.gen[rid] = g
        r.ptotal[rid] = r.inp[rid] + g
        r.prefilled[rid] = 0
        self.waiting.appendleft(rid)
        return 0.0

    # ------------------------------------------------------------------ one macro step
    def step(self, now: float, next_arrival: float, horizon: float = -math.inf) -> float:
        """Run the next iteration (or closed-form run of decode iterations) starting at `now`;
        returns its end time. Completions are reported through the callbacks at that time.

        `next_arrival`: the earliest time a request could be added to this engine -- the next
        arrival or hand-off, or another engine's next step, which may route one here; a decode
        run stops at the first iteration boundary after it. `horizon`: the event loop guarantees nothing else happens before it (no arrival, no
        other engine's step). Until then a prompt's full-budget chunks run on into its last
        chunk, and that into the decode runs after it, as one macro step: the same iterations,
        each scheduled as the event loop would have scheduled it (see `_quiet`).
        """
        cfg = self.cfg
        outstanding = self.outstanding
        extra_s = 0.0
        # make room for the next decode token of every running sequence; a step that had to
        # preempt admits no new request (vLLM's scheduler: waiting requests are scheduled only
        # `if not preempted_reqs`), else the freed blocks would take the preempted prompt straight
        # back in, to be preempted again at the next decode step
        p0 = self.num_preemptions
        while self.n_dec and self.blocks_used(1) > self.cap_blocks and len(self.running) > 1:
            extra_s += self._preempt_one(now)
        self._no_admit = self.num_preemptions != p0
        lag_k = self._unlag(now) if self.lagged else 0  # 1: requests wait one more iteration
        if self.swapped:
            extra_s = self._swap_in(now, extra_s)
        if self.incoming:
            self._admit_incoming(now)
        if cfg.adp_balance_timeout_iters and self.n_dec < cfg.adp_ranks:
            self._adp_anchor = self.num_iterations  # attention-DP balance: a rank without decodes restarts the counter
        recv_k = self._poll() if self.inbox else 0  # > 0: decode iterations until the next poll
        if lag_k:
            recv_k = lag_k

        if self.waiting or self.prefilling:
            chunks, finishing = self._schedule_prefill(now)
        else:
            chunks, finishing = [], []
        if chunks and cfg.batch_wait_iters and self.n_dec and self.mixing and self._hold(chunks):
            # batch waiting: this iteration (and the next ones, up to the timeout or an event)
            # runs the decodes only; the held requests stay admitted
            k0 = self.num_iterations
            k = cfg.batch_wait_iters - self._held_iters
            end = self._decode_run(now, next_arrival, extra_s, max_k=min(k, recv_k) if recv_k else k)
            self._held_iters += self.num_iterations - k0
            return end
        if chunks and cfg.adp_balance_timeout_iters:
            k = self._adp_hold(len(chunks))
            if k:  # context work held back: decodes only, to the counter's wrap or the next arrival
                end = self._decode_run(now, next_arrival, extra_s, max_k=lag_k or k)
                return end
        if not chunks:
            if self.n_dec == 0:
                # nothing runnable (e.g. KV full with only waiting work): idle until something changes
                self.busy_until = now
                return now
            end = self._decode_run(now, next_arrival, extra_s, max_k=recv_k)
            return self._decode_on(end, next_arrival, horizon, outstanding)
        # (a capped chunk leaves budget for other requests' chunks; batch waiting re-decides every
        # chunk; the scheduler polls its inbox after every prefill iteration)
        if (len(chunks) == 1 and not finishing and len(self.prefilling) == 1 and self.mixing and not self.swapped
                and chunks[0][0] < self._chunk_cap and not cfg.batch_wait_iters and not cfg.adp_balance_timeout_iters
                and not self.inbox and not self.lagged):
            end = self._chunk_run(now, chunks[0], extra_s)
            rid = self.prefilling[0]
            p = self.r.prefilled[rid]
            rem = self.r.ptotal[rid] - p
            if rem > cfg.max_num_batched_tokens - self.n_dec or not self._quiet(end, horizon, outstanding):
                return end
            # what the next step would schedule: this prompt's last chunk, and nothing else
            now, chunks, finishing, extra_s = end, [(rem, p)], [rid], 0.0
        end = self._iteration(now, chunks, finishing, extra_s)
        return self._decode_on(end, next_arrival, horizon, outstanding)

    def _hold(self, chunks: list[tuple[int, int]]) -> bool:
        """Batch waiting: whether this iteration's prefill chunks are held back (TRT-LLM's
        PyExecutor._waiting_requests). Counted: each scheduled request's whole prompt (chunks
        belong to `prefilling` in order), and one token per decode."""
        ptotal = self.r.ptotal
        tokens = self.n_dec + sum(ptotal[rid] for rid in self.prefilling[:len(chunks)])
        if self._held_iters >= self.cfg.batch_wait_iters or tokens >= self._hold_tokens:
            self._held_iters = 0
            return False
        return True

    def _adp_hold(self, n_ctx: int) -> int:
        """Attention-DP balance (`EngineConfig.adp_balance_timeout_iters`) for an iteration that
        schedules n_ctx context requests: 0 to run them now (the counter restarts), else how many
        decode-only iterations hold them back before the decision is due again."""
        cfg, n = self.cfg, self.num_iterations
        dp = cfg.adp_ranks
        if self.n_dec < dp:  # a rank without decodes: run the context work at once
            self._adp_anchor, self._adp_batched = n + 1, 0
            return 0
        if n_ctx >= dp:  # every rank has context work
            self._adp_anchor = n + 1
            if self._adp_batched < cfg.adp_balance_batching_iters:
                self._adp_batched += 1
                return 1
            self._adp_batched = 0
            return 0
        T = cfg.adp_balance_timeout_iters
        left = (self._adp_anchor + T - 1 - n) % T  # held iterations before the counter reaches T
        if left == 0:
            self._adp_anchor = n + 1
            return 0
        return left

    def _decode_on(self, end: float, next_arrival: float, horizon: float, outstanding: int) -> float:
        """While the next steps would be plain decode runs (no prefill left, nothing waiting) and
        nothing else happens first, run them now; returns the new end time."""
        while self.n_dec and not self.prefilling and self._quiet(end, horizon, outstanding):
            end = self._decode_run(end, next_arrival, 0.0)
        return end

    def _quiet(self, t: float, horizon: float, outstanding: int) -> bool:
        """Whether the step the event loop would start at `t` can start here and now, and sees
        exactly what it would see there: nothing external happens first (t < horizon), no request
        of this engine finished if completions may queue new events, nothing waits for admission
        or swap-in, no preemption is due, and the scheduler is not a static batcher."""
        return (t < horizon and self.pipe is None and (self.outstanding == outstanding or not self.finish_queues_events)
                and not self.waiting and not self.swapped and not self.inbox and not self.lagged
                and not self.incoming and not self.cfg.static_batching
                and not (self.n_dec and len(self.running) > 1 and self.blocks_used(1) > self.cap_blocks))

    def _swap_in(self, now: float, extra_s: float) -> float:
        """Swapped-out requests come back first, while they fit; adds their copy time to extra_s."""
        cfg, r = self.cfg, self.r
        while self.swapped and len(self.running) < cfg.max_num_seqs:
            rid = self.swapped[0]
            toks = r.inp[rid] + r.gen[rid]
            if self.blocks_used(1) + toks / cfg.block_size + self._new_seq_blocks > self.cap_blocks:
                break
            self.swapped.popleft()
            self.swap_tokens -= toks
            extra_s += toks * cfg.kv_bytes_per_token / cfg.swap_bandwidth_bytes_per_s
            self._admitted(rid)
            self._join_decode(rid, r.gen[rid])
            if self._itl_v is not None:  # its next token gap began at its last token before the swap-out
                self._gap_groups.append((now - r.t_last[rid], self._stall_s, rid))
        return extra_s

    def _admitted(self, rid: int) -> None:
        """rid joins the running set (admission, swap-in, a KV hand-off)."""
        self.running.append(rid)
        self._reserve_bound_tokens += self._kept_tokens(self.r.out[rid])

    def _released(self, rid: int, remove: bool = False) -> None:
        """rid has left the running set (preempted: already popped; finished: `remove`d here)."""
        if remove:
            self.running.remove(rid)
        self._reserve_bound_tokens -= self._kept_tokens(self.r.out[rid])
        refs = self._refs.pop(rid, None)
        if refs is not None:  # its KV blocks are free now: its prompt's hash blocks stay cached there
            lru = self._lru
            for x, own in refs:
                if self._hold_block(x, -1, -1 if own else 0) == 0:
                    lru[x] = None  # not in the LRU while pinned: it joins as the most recently used
            # (no trim here: the free blocks grew by at least what joined the LRU, and a preempted
            # request's KV is still counted until its caller takes it off)

    def _kept_tokens(self, left: int) -> int:
        """Output tokens admission keeps back for a request with `left` still to generate, before
        the `kv_reserve_output` share (clipped at `kv_reserve_cap_tokens`, as SGLang does)."""
        cap = self.cfg.kv_reserve_cap_tokens
        return 0 if left <= 0 else left if left < cap else cap

    def _reserved_blocks(self, exact: bool = False, upto: int | None = None) -> float:
        """Blocks admission keeps back for the running requests' future output tokens
        (`EngineConfig.kv_reserve_output`; 0 for an optimistic, vLLM-style scheduler): exact over
        the first `upto` running requests, or (cheap) the bound that keeps back every running
        request's whole output, which decides the same whenever it admits."""
        cfg, r, tick = self.cfg, self.r, self.tick
        frac = cfg.kv_reserve_output
        if not frac or not self.running:
            return 0.0
        if not exact:
            return frac * self._reserve_bound_tokens / cfg.block_size
        pre, kept = set(self.prefilling), self._kept_tokens
        rest = 0
        for rid in self.running[:upto]:
            gen = r.gen[rid] if rid in pre else r.gen[rid] + tick - r.tick0[rid]
            rest += kept(r.out[rid] - gen)
        return frac * rest / cfg.block_size

    def _reserve_for(self, rid: int) -> float:
        """Blocks a request about to be admitted must leave free for its own future output."""
        cfg = self.cfg
        if not cfg.kv_reserve_output:
            return 0.0
        return cfg.kv_reserve_output * self._kept_tokens(self.r.out[rid] - self.r.gen[rid]) / cfg.block_size

    def _admit_incoming(self, now: float) -> None:
        """Decode role: requests whose KV arrived join the decode set when they fit."""
        cfg, r = self.cfg, self.r
        n0, exact = len(self.running), False
        bound = reserved = self._reserved_blocks() if self.incoming else 0.0
        while self.incoming and len(self.running) < cfg.max_num_seqs:
            rid = self.incoming[0]
            keep = self._reserve_for(rid)
            if self.blocks_used(1) + (r.inp[rid] + 1) / cfg.block_size + self._new_seq_blocks + reserved + keep > self.cap_blocks \
                    and self.running:
                if exact or not bound:
                    break
                # the bound refused: decide again on the exact reservation of those running before
                reserved += self._reserved_blocks(True, n0) - bound
                exact = True
                continue
            reserved += keep
            self.incoming.popleft()
            if math.isnan(r.t_sched[rid]):
                r.t_sched[rid] = now
            self._admitted(rid)
            if cfg.first_token_here:
                self._join_decode(rid, 0)  # the first token is this engine's first decode tick
                self._first_pending.append(rid)
            else:
                self._join_decode(rid, 1)
                if self._itl_v is not None:  # its second token's gap began at the prefill engine's first token
                    self._gap_groups.append((now - r.t_first[rid], self._stall_s, rid))

    def _schedule_prefill(self, now: float) -> tuple[list[tuple[int, int]], list[int]]:
        """Pick prefill chunks for this iteration; returns (chunks as (new, cached), finishing rids)."""
        if self._ranked:
            return self._schedule_prefill_ranked(now)
        cfg, r = self.cfg, self.r
        # a decode engine's waiting queue holds only the requests it preempted (new ones arrive
        # with their KV, in `incoming`): it recomputes them itself, prompt + generated tokens,
        # as a vLLM decode instance does -- they are not sent back to a prefill engine
        chunking, mixing = cfg.chunked_prefill, self.mixing
        # static batching admits nothing while a batch is in flight, but finishes prefilling it
        batch_in_flight = cfg.static_batching and (self.n_dec or self.prefilling)
        budget = cfg.max_num_batched_tokens - (self.n_dec if mixing else 0)
        chunks: list[tuple[int, int]] = []
        finishing: list[int] = []
        prefilled, ptotal = r.prefilled, r.ptotal
        cap = self._chunk_cap
        # continue partially prefilled requests
        for rid in self.prefilling:
            if budget <= 0:
                break
            p = prefilled[rid]
            rem = ptotal[rid] - p
            q = rem if not chunking or rem < budget else budget
            if q > cap:
                q = cap
            chunks.append((q, p))
            budget -= q
            if q == rem:
                finishing.append(rid)
        # admit new requests while budget, sequence slots and KV blocks last
        waiting = self.waiting
        static = cfg.static_batching
        if batch_in_flight or self._no_admit or not (waiting and (budget > 0 or static)):
            return chunks, finishing
        B = cfg.block_size
        n0, exact = len(self.running), False
        bound = self._reserved_blocks()  # exact only if it would refuse someone (below)
        # room for the running decodes' next token too, whether or not they share this iteration
        # (without it an unmixed prefill iteration can fill the cache, and the next decode step
        # preempts what it just admitted)
        used = self.blocks_used(1 if self.n_dec else 0) + bound
        for q, _p in chunks:
            used += q / B
        while waiting and (budget > 0 or static) and len(self.running) < cfg.max_num_seqs:
            rid = waiting[0]
            fresh, p = self._prefill_start(rid)
            rem = ptotal[rid] - p
            if budget <= 0 or (static and not chunking and rem > budget and chunks):
                # static batching: the batch is up to max_num_seqs requests, admitted together;
                # those past this iteration's token budget are prefilled in the next iterations
                need = (p + rem) / B + self._new_seq_blocks + self._reserve_for(rid)
                if used + need > self.cap_blocks and (self.running or chunks):
                    break
                waiting.popleft()
                self._prefill_admitted(rid, now, fresh, p)
                self.prefilling.append(rid)
                used += need
                budget = 0
                continue
            if not chunking and rem > budget and chunks:
                break  # whole prompts only; the next one waits for the next prefill iteration
            q = rem if not chunking or rem < budget else budget
            if q > cap:
                q = cap
            need = (p + q) / B + self._new_seq_blocks + self._reserve_for(rid)
            if used + need > self.cap_blocks and (self.running or chunks):
                if exact or not bound:
                    break
                used += self._reserved_blocks(True, n0) - bound
                exact = True
                if used + need > self.cap_blocks:
                    break
            waiting.popleft()
            self._prefill_admitted(rid, now, fresh, p)
            self.prefilling.append(rid)
            chunks.append((q, p))
            budget -= q
            used += need
            if q == rem:
                finishing.append(rid)
        return chunks, finishing

    def _prefill_start(self, rid: int) -> tuple[bool, int]:
        """(fresh, tokens already prefilled) of a waiting request the scheduler looks at; a fresh one
        (not a preempted request coming back) gets its prefix-cache hit here, looked up again at
        every look until it is admitted (the cache may have lost or gained blocks meanwhile)."""
        r = self.r
        fresh = r.gen[rid] == 0
        if fresh and (r.prefilled[rid] == 0 or r.prefilled[rid] == r.cached[rid]):
            hit = self.prefix_match_tokens(rid) if self._prefix else 0
            r.cached[rid] = hit
            r.prefilled[rid] = hit
        return fresh, r.prefilled[rid]

    def _prefill_admitted(self, rid: int, now: float, fresh: bool, p: int) -> None:
        """Bookkeeping of a waiting request admitted for prefill with p tokens already in its KV."""
        r = self.r
        if math.isnan(r.t_sched[rid]):
            r.t_sched[rid] = now
        if fresh and not r.preemptions[rid]:  # counted once: not again when a preempted prompt comes back
            self.prompt_tokens += r.inp[rid]
            self.prefix_hit_tokens += r.cached[rid]
        self._admitted(rid)
        self.pref_tokens += p
        if fresh and p and self._prefix:
            self._ref_hits(rid, p)

    def _block_tokens(self, rid: int, i: int) -> int:
        """Prompt tokens in rid's i-th hash block."""
        b = self.r.hash_block_tokens
        k = self.r.inp[rid] - i * b
        return b if k > b else k if k > 0 else 0

    def _ref_hits(self, rid: int, hit: int) -> None:
        """rid was admitted with its first `hit` prompt tokens found in the cache: it holds those hash
        blocks without copies of its own (vLLM's and SGLang's block tables point at the cached ones)."""
        lru = self._lru
        refs = self._refs.setdefault(rid, [])
        ids = self.r.hash_ids[rid]
        for i in range(min(-(-hit // self.r.hash_block_tokens), len(ids))):
            x = int(ids[i])
            if x in lru:
                del lru[x]
            elif x not in self._pinned:  # (looked up in this very step: cannot be gone)
                break
            self._hold_block(x, 1, 0, self._block_tokens(rid, i))
            refs.append((x, False))

    def _hold_block(self, x: int, d_holders: int, d_own: int, tokens: int = 0) -> int:
        """Hash block x gains d_holders holders, d_own of them with a copy of their own; updates the
        shared-token count and returns the holders left (0: x left the pinned set). `tokens`: the
        block's prompt tokens, as a new holder counts them (a block's tokens are its content's: the
        first holder's count stands while it is held)."""
        pinned, own = self._pinned, self._own
        h, o = pinned.get(x, 0), own.get(x, 0)
        tok = self._tok.setdefault(x, tokens)
        if h:
            self._shared_tokens -= tok * (h - (o if o > 1 else 1))
        h, o = h + d_holders, o + d_own
        if h:
            pinned[x] = h
            self._shared_tokens += tok * (h - (o if o > 1 else 1))
        else:
            del pinned[x]
            del self._tok[x]  # (set again by whoever holds it next)
        if o:
            own[x] = o
        else:
            own.pop(x, None)
        return h

    def _schedule_prefill_ranked(self, now: float) -> tuple[list[tuple[int, int]], list[int]]:
        """`_schedule_prefill` with a queue per attention-DP rank (`random_rank_queues`): each rank
        continues its partly prefilled requests, then admits from its own queue, up to its own
        budget. Reorders `prefilling` so that the scheduled requests come first, in chunk order."""
        cfg, r = self.cfg, self.r
        rq: Any = self.waiting
        cap = self._chunk_cap
        left = [cap] * rq.dp
        rank = rq.rank
        prefilled, ptotal = r.prefilled, r.ptotal
        chunks: list[tuple[int, int]] = []
        finishing: list[int] = []
        on: list[int] = []
        off: list[int] = []
        for rid in self.prefilling:
            k = rank[rid]
            b = left[k]
            if b <= 0:
                off.append(rid)
                continue
            p = prefilled[rid]
            rem = ptotal[rid] - p
            q = rem if rem < b else b
            left[k] = b - q
            chunks.append((q, p))
            on.append(rid)
            if q == rem:
                finishing.append(rid)
        B = cfg.block_size
        used = self.blocks_used(0) + self._reserved_blocks()
        for q, _p in chunks:
            used += q / B
        full = False
        dp = rq.dp
        start = self.num_iterations % dp  # no rank goes first every time when slots or KV run short
        for j in range(dp):
            k = start + j if start + j < dp else start + j - dp
            queue = rq.queues[k]
            while queue and left[k] > 0 and len(self.running) < cfg.max_num_seqs:
                rid = queue[0]
                fresh, p = self._prefill_start(rid)
                rem = ptotal[rid] - p
                q = rem if rem < left[k] else left[k]
                need = (p + q) / B + self._new_seq_blocks
                if used + need > self.cap_blocks and (self.running or chunks):
                    full = True
                    break
                rq.popleft_from(k)
                self._prefill_admitted(rid, now, fresh, p)
                chunks.append((q, p))
                on.append(rid)
                left[k] -= q
                used += need
                if q == rem:
                    finishing.append(rid)
            if full:
                break
        self.prefilling = on + off
        return chunks, finishing

    def _iteration(self, now: float, chunks, finishing, extra_s: float) -> float:
        cfg, r = self.cfg, self.r
        n_dec = self.n_dec if self.mixing else 0
        rows = n_dec + len(finishing)
        if self._ranked:  # each rank's chunks stay on that rank: the busiest sets the time
            rank = self.waiting.rank
            t = self.st.iteration_ranked(chunks, [rank[rid] for rid in self.prefilling[:len(chunks)]], rows) + extra_s
            for rid in finishing:  # a prefill engine's finished requests leave it
                del rank[rid]
        else:
            t = self.st.iteration(chunks, n_dec, self.dec_base + n_dec * self.tick if n_dec else 0, rows) + extra_s
        work_s = t
        if self.pipe is None:
            end = now + t
        else:  # its span: the work plus any wait for stages the other virtual engines hold
            end = self.pipe.through(now, t, self.st.host_s(rows), self.st.head_s(rows))
            t = end - now
        # apply prefill progress (chunks were taken in self.prefilling order)
        prefilling, prefilled = self.prefilling, r.prefilled
        for i, (q, _p) in enumerate(chunks):
            prefilled[prefilling[i]] += q
            self.pref_tokens += q
        if n_dec:
            self._advance_ticks(1, end, t, n_dec)
        elif self.n_dec:
            self._stall_s += t  # decodes wait behind a prefill-only iteration: part of their next ITL
        if finishing and self._kv_u_end < 0.0:
            self._kv_u_end = self.kv_utilisation()
        for rid in finishing:
            prefilling.remove(rid)
            self.pref_tokens -= prefilled[rid]
            if self._prefix:
                self._cache_insert(rid)
            gen = r.gen[rid] + 1
            if gen == 1:
                r.t_first[rid] = end
            elif self._itl_v is not None:  # recomputed after a preemption: this token's gap began before it
                self._itl_v.append(end - r.t_last[rid])
                self._itl_c.append(self._itl_w)
            if gen >= r.out[rid] or cfg.role == "prefill":
                r.gen[rid] = gen
                self._released(rid, remove=True)
                self._done(rid, end)
            else:
                self._join_decode(rid, gen)
                if self._stall_s and self._itl_v is not None:  # not held up by the prefill-only time before its token
                    self._gap_groups.append((0.0, self._stall_s, rid))
        self.num_iterations += 1
        self._recv_anchor = self.num_iterations  # a prefill iteration: the scheduler polls next
        self._iter_start_s = now
        return self._finish_step(now, end, work_s)

    def _chunk_run(self, now: float, chunk: tuple[int, int], extra_s: float) -> float:
        """Back-to-back iterations in which one long prompt's chunk takes the whole token budget.

        While the prompt has more left than the budget, every iteration is the same decisions
        the scheduler would make (decodes + one full-budget chunk; nothing else can be admitted
        because no budget is left), so they run here without returning to the event loop. Stops
        before the prompt's last chunk, after any completion (new requests may arrive), or when
        the KV cache would need a preemption — the regular path then takes over.
        """
        cfg, r, st = self.cfg, self.r, self.st
        rid = self.prefilling[0]
        q, p = chunk
        end = now
        ptotal = r.ptotal[rid]
        iterations = 0
        work_s = 0.0
        while True:
            n = self.n_dec
            t = st.one_chunk(q, p, n, self.dec_base + n * self.tick if n else 0, n) + extra_s
            extra_s = 0.0
            work_s += t
            if self.pipe is None:
                end += t
            else:
                e = self.pipe.through(end, t, st.host_s(n), st.head_s(n))
                t, end = e - end, e
            self.pref_tokens += q
            p += q
            iterations += 1
            if n:
                self._advance_ticks(1, end, t, n)
            budget = cfg.max_num_batched_tokens - self.n_dec
            if self.n_dec != n or ptotal - p <= budget or budget <= 0 or self.pipe is not None:
                break
            if self.blocks_used(1) + budget / cfg.block_size + 1 > self.cap_blocks:
                break
            q = budget
        r.prefilled[rid] = p
        self.num_iterations += iterations
        self._recv_anchor = self.num_iterations
        self._iter_start_s = end - t
        return self._finish_step(now, end, work_s)

    def _advance_ticks(self, k: int, end: float, v0: float, c0: int, v1: float = 0.0, c1: int = 0, n: int = 0,
                       per_chunk: float = 1.0) -> None:
        """k decode ticks of n sequences (0: c0, a one-tick step) happened, ending at `end`, with c0
        token gaps of v0 s and c1 of v1 s (decode runs report two mean gaps, one per half);
        completes the requests that are done. `per_chunk`: ticks per streamed chunk (speculative
        decoding's tokens per step in a decode-only run, else 1): the ITL records c / per_chunk
        gaps of v x per_chunk."""
        self.tick += k
        vs = self._itl_v
        if self._first_pending:  # (a one-iteration step; a decode run has made them already)
            self._first_tokens(end)
        if self._stall_s or self._gap_groups or self._gap_drop:
            c0 = self._first_gaps(v0, c0, n or c0, per_chunk)
        if vs is not None:
            w = self._itl_w / per_chunk
            if c0 > 0:
                vs.append(v0 * per_chunk)
                self._itl_c.append(int(c0 * w + 0.5))
            if c1 > 0:
                vs.append(v1 * per_chunk)
                self._itl_c.append(int(c1 * w + 0.5))
            if len(vs) >= _ITL_BATCH:
                self.flush_itl()
        heap = self.heap
        if heap and heap[0][0] <= self.tick:
            self._complete_due(end)

    def _first_tokens(self, t: float) -> None:
        """A decode engine's `first_token_here` requests made their first token at t: their TTFT,
        so that tick is not a token gap of theirs (`_gap_drop`)."""
        for rid in self._first_pending:
            self.r.t_first[rid] = t
        self._gap_drop += len(self._first_pending)
        self._first_pending.clear()

    def _first_gaps(self, v0: float, c0: int, n_first: int, per_chunk: float = 1.0) -> int:
        """The first decode tick of `n_first` sequences after stalls, joins or first tokens
        (`_stall_s`, `_gap_groups`, `_gap_drop`): records the gaps that differ from the tick's
        mean step v0 and returns how many of the c0 gaps of v0 remain. With `per_chunk` ticks per
        streamed chunk, each such gap is the first chunk's: per_chunk ticks plus the delay."""
        vs, cs = self._itl_v, self._itl_c
        w = self._itl_w
        v0 = v0 * per_chunk
        stall, left = self._stall_s, n_first
        drop = self._gap_drop if self._gap_drop < left else left
        left -= drop
        c0 -= drop
        for base, at, _rid in self._gap_groups:
            if left > 0:
                if vs is not None:
                    vs.append(v0 + base + stall - at)
                    cs.append(w)
                left -= 1
                c0 -= 1
        if stall and left > 0:  # the sequences that were decoding while prefill-only iterations ran
            if vs is not None:
                vs.append(v0 + stall)
                cs.append(left * w)
            c0 -= left
        self._stall_s, self._gap_drop = 0.0, 0
        self._gap_groups.clear()
        return c0

    def _complete_due(self, end: float) -> None:
        """Pop the decode requests whose target tick has come (skipping stale heap entries)."""
        heap, r, tick = self.heap, self.r, self.tick
        if self._kv_u_end < 0.0 and heap and heap[0][0] <= tick:
            self._kv_u_end = self.kv_utilisation()
        while heap and heap[0][0] <= tick:
            _target, ver, rid = heapq.heappop(heap)
            if ver != r.ver[rid]:
                continue
            self.dec_base -= r.inp[rid] + r.gen[rid] - r.tick0[rid]
            r.gen[rid] = r.out[rid]
            self.n_dec -= 1
            r.ver[rid] += _VER_STEP
            self._released(rid, remove=True)
            self._done(rid, end)

    def _decode_run(self, now: float, next_arrival: float, extra_s: float, max_k: int = 0) -> float:
        """Decode-only iterations with an unchanging batch, advanced in closed form to the next event
        (and at most `max_k` of them, if > 0)."""
        st, n, cfg = self.st, self.n_dec, self.cfg
        S = self.dec_base + n * self.tick  # context sum at the next tick
        # stale heap tops do not bound the run
        heap, ver = self.heap, self.r.ver
        while heap and heap[0][1] != ver[heap[0][2]]:
            heapq.heappop(heap)
        k_done = heap[0][0] - self.tick if heap else 1
        if k_done < 1:
            k_done = 1
        # KV exhaustion: blocks_used(k) <= cap
        B = cfg.block_size
        room = self.cap_blocks * B - (S + self.pref_tokens - self._shared_tokens + (n + len(self.prefilling)) * self._seq_slack)
        k_kv = int(room // n) if n else k_done
        k = k_done if k_done < k_kv else k_kv
        if 0 < max_k < k:
            k = max_k
        if k < 1 or self.pipe is not None:
            k = 1
        a = st.decode_step(n, S)
        if self._first_pending and self.pipe is None:  # requests admitted at `now` get their first token at the end of this iteration
            self._first_tokens(now + extra_s + a)  # (through a pipeline: at its end, in `_advance_ticks`)
        if k > 1:
            b = (st.decode_step(n, S + n * (k - 1)) - a) / (k - 1)
        else:
            b = 0.0
        # a new arrival (or, for a decode engine, a KV hand-off) could join at the next boundary;
        # a full engine runs on to its next completion unless a router reads its load meanwhile
        if k > 1 and next_arrival < math.inf and not self.waiting and not self.incoming \
                and (len(self.running) < cfg.max_num_seqs or self.routed) and not cfg.static_batching:
            # stop at the first iteration boundary at or after the next arrival
            dt = next_arrival - now - extra_s
            # smallest k' with k' a + b k'(k'-1)/2 >= dt
            if b > 1e-15:
                kk = math.ceil((-(a - b / 2) + math.sqrt((a - b / 2) ** 2 + 2 * b * dt)) / b)
            else:
                kk = math.ceil(dt / a)
            if kk < k:
                k = kk if kk > 1 else 1
        # extra_s (swap-in copies) runs once, before the first iteration: every sequence's next gap waits for it
        total = extra_s + k * a + b * k * (k - 1) / 2
        if self.pipe is None:
            end = now + total
        else:  # one iteration (k = 1); a wait for the stages lengthens its token gap
            end = self.pipe.through(now, total, st.host_s(n), st.head_s(n))
            a = end - now - extra_s
        self._stall_s += extra_s
        # token gaps: the mean step of each half of the run (all of it is the first half when k = 1)
        h = k // 2 or 1
        self._advance_ticks(k, end, a + b * (h - 1) / 2, n * h, a + b * (h + (k - 1)) / 2, n * (k - h), n,
                            self._itl_t)
        self.num_iterations += k
        self._iter_start_s = end - (a + b * (k - 1))
        return self._finish_step(now, end, total)

    def _finish_step(self, now: float, end: float, work_s: float) -> float:
        """Bookkeeping at the end of a step from `now` to `end` that kept the GPUs busy `work_s`
        (through a pipeline less than end - now: the micro-batch waited for stages)."""
        self.busy_s += end - now if self.pipe is None else work_s
        self.busy_until = end
        used = self.blocks_used()
        if self._lru:  # live KV grew (admissions, decode tokens): cached prefixes make room
            self._trim_cache(used)
        u = self.kv_utilisation(used)
        u_end = self._kv_u_end if self._kv_u_end >= 0.0 else u
        self._kv_u_end = -1.0
        gap = now - self._kv_t
        self.kv_area_s += self._kv_u * (gap if gap > 0.0 else 0.0) + 0.5 * (self._kv_u + u_end) * (end - now)
        self._kv_u, self._kv_t = u, end
        if self.num_iterations % self._kv_stride == 0:
            self.kv_samples.append((end, u_end))
            self.kv_area_samples.append(self.kv_area_s)
            self.busy_samples.append(self.busy_s)
            if len(self.kv_samples) >= 20_000:
                self.kv_samples = self.kv_samples[::2]
                self.kv_area_samples = self.kv_area_samples[::2]
                self.busy_samples = self.busy_samples[::2]
                self._kv_stride *= 2
        return end

    def flush_itl(self) -> None:
        """Bin the buffered token gaps into the shared ITL histogram (one numpy pass)."""
        if self._itl_v:
            self.itl.add_many(np.frombuffer(self._itl_v), np.frombuffer(self._itl_c, dtype=np.int64))
            self._itl_v, self._itl_c = array("d"), array("q")  # (numpy views pin the old buffers)

    def discard_itl(self) -> None:
        """Drop the buffered, not yet binned token gaps (the warm-up cut-off: `simulate` resets the
        shared histogram and calls this on every engine, so ITL counts only later gaps)."""
        if self._itl_v is not None:
            self._itl_v, self._itl_c = array("d"), array("q")

    def _done(self, rid: int, t: float) -> None:
        self.outstanding -= 1
        self.on_finish(rid, t, self)

    def _cache_insert(self, rid: int) -> None:
        """rid's prompt is prefilled: it holds the hash blocks it computed, cached (pinned) while it
        holds its KV (`_released` unpins them). A block the cache held already (another request
        computed it meanwhile) stays cached; rid keeps its own copy as well (vLLM's block pool), or
        frees it and shares the cached one (SGLang's radix cache:
        `EngineConfig.prefix_dedup_on_insert`)."""
        if not self._prefix:
            return
        lru = self._lru
        refs = self._refs.get(rid)
        if refs is None:
            refs = self._refs[rid] = []
        ids = self.r.hash_ids[rid]
        dedup = self.cfg.prefix_dedup_on_insert
        for i in range(len(refs), len(ids)):  # (the ones it found cached come first, held already)
            x = int(ids[i])
            cached = x in self._pinned or x in lru
            if x in lru:
                del lru[x]
            own = not (cached and dedup)
            self._hold_block(x, 1, 1 if own else 0, self._block_tokens(rid, i))
            refs.append((x, own))

    def _trim_cache(self, used: float = -1.0) -> None:
        """Evict least recently used unpinned hash blocks until they fit the KV blocks that live
        requests leave free (as vLLM / SGLang keep cached prefixes only in free blocks); `used`:
        `blocks_used()` if the caller has it."""
        lru = self._lru
        if not lru:
            return
        free = (self.cap_blocks - (used if used >= 0.0 else self.blocks_used())) / self._hash_blocks
        keep = int(free) if free > 0 else 0
        while len(lru) > keep:
            lru.popitem(last=False)
