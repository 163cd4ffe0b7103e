"""One serving engine replica: iteration-level scheduling over a paged KV cache.

What it models (vLLM / SGLang / TRT-LLM style):
- continuous batching with `max_num_seqs` running sequences and a `max_num_batched_tokens`
  token budget per iteration;
- chunked prefill (Sarathi-Serve): decodes first (one token each), then prefill chunks of
  partially prefilled requests, then new requests, all in one iteration; without chunked
  prefill an iteration is either prefill-only (whole prompts, prefill first) or decode-only;
- static batching (baseline): a batch is admitted only when the previous one has finished;
- paged KV cache of `kv_capacity_tokens` in blocks of `block_size` tokens; when the next
  iteration needs more blocks than are free, the most recently admitted request is
  preempted (LIFO, as vLLM): 'recompute' drops its KV and re-prefills prompt + generated
  tokens later; 'swap' copies its KV to host memory over PCIe and back;
- prefix caching by block hash (Mooncake `hash_ids`): cached leading blocks are not prefilled;
  an LRU of hash blocks no larger than the KV cache;
- disaggregation roles: 'prefill' engines stop after the first token, 'decode' engines take
  requests whose KV arrives from a prefill engine.

Speed: a decode-phase request's progress is implied by the engine's decode tick counter
(tokens = tokens at join + ticks since join), completions come from a heap keyed by target
tick, and a run of decode-only iterations with an unchanged batch is advanced in closed form
(`StepTimeModel.decode_run`) up to the next event (a completion, the next arrival that could
be admitted, or KV exhaustion). No per-request work happens per iteration.

KV accounting: a sequence of L tokens holds ceil(L / block_size) blocks; for the decode set
the total is tracked as (sum of contexts + n * (block_size - 1) / 2) / block_size, i.e. on
average half a block of slack per sequence.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from dataclasses import dataclass

from .steptime import StepTimeModel


@dataclass
class EngineConfig:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    static_batching: bool = False
    block_size: int = 16
    kv_capacity_tokens: int = 1 << 20
    preemption: str = "recompute"  # or "swap"
    prefix_caching: bool = True
    swap_bandwidth_bytes_per_s: float = 25e9
    kv_bytes_per_token: float = 0.0  # per GPU, for swap time and KV transfer
    role: str = "both"  # both | prefill | decode


class Requests:
    """Per-request state shared by all engines of a simulation (compact arrays, indexed by request id)."""

    def __init__(self, input_len, output_len, hash_ids=None, hash_block_tokens: int = 512):
        from array import array

        n = len(input_len)
        self.n = n
        self.inp = array("q", (int(x) for x in input_len))
        self.out = array("q", (int(x) for x in output_len))
        self.hash_ids = hash_ids
        self.hash_block_tokens = hash_block_tokens
        nan = float("nan")
        self.arrival = array("d", [nan]) * n
        self.t_sched = array("d", [nan]) * n
        self.t_first = array("d", [nan]) * n
        self.t_finish = array("d", [nan]) * n
        self.gen = array("q", [0]) * n  # tokens generated before the current phase
        self.ptotal = array("q", [0]) * n  # prompt tokens of the current prefill attempt
        self.prefilled = array("q", [0]) * n  # of ptotal, already in the KV cache
        self.cached = array("q", [0]) * n  # prompt tokens served from the prefix cache
        self.tick0 = array("q", [0]) * n  # decode tick at which it joined the decode set
        self.ver = array("q", [0]) * n  # bumps invalidate heap entries
        self.preemptions = array("q", [0]) * n
        self.engine = array("q", [-1]) * n


class Engine:
    def __init__(self, eid: int, st: StepTimeModel, cfg: EngineConfig, reqs: Requests, on_finish, itl=None):
        self.eid, self.st, self.cfg, self.r = eid, st, cfg, reqs
        self.on_finish, self.itl = on_finish, itl
        self.waiting: deque[int] = deque()  # new and recompute-preempted requests
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
        self.kv_samples: list[tuple[float, float]] = []
        self._stall_s = 0.0  # prefill-only time decoding requests waited since their last token
        self._kv_stride = 1
        self._lru: OrderedDict[int, None] = OrderedDict()
        self._lru_cap = max(1, cfg.kv_capacity_tokens // max(reqs.hash_block_tokens, 1))
        self.cap_blocks = cfg.kv_capacity_tokens // cfg.block_size
        self.outstanding = 0  # routed here and not finished (router's load signal)

    # ------------------------------------------------------------------ queries
    @property
    def idle(self) -> bool:
        return not (self.waiting or self.prefilling or self.n_dec or self.swapped or self.incoming)

    def _dec_ctx_sum(self) -> int:
        """Sum of decode-set contexts at the next tick."""
        return self.dec_base + self.n_dec * self.tick

    def blocks_used(self, extra_decode_ticks: int = 0) -> float:
        B = self.cfg.block_size
        n_seq = self.n_dec + len(self.prefilling)
        toks = self._dec_ctx_sum() + self.n_dec * extra_decode_ticks + self.pref_tokens
        return (toks + n_seq * (B - 1) * 0.5) / B

    def kv_utilisation(self) -> float:
        return min(1.0, self.blocks_used() / max(self.cap_blocks, 1))

    def prefix_match_tokens(self, rid: int) -> int:
        """Leading prompt tokens this engine's prefix cache holds for request rid."""
        h = self.r.hash_ids
        if h is None or not self.cfg.prefix_caching:
            return 0
        ids = h[rid]
        n = 0
        for x in ids:
            if int(x) not in self._lru:
                break
            n += 1
        return min(n * self.r.hash_block_tokens, self.r.inp[rid] - 1)

    # ------------------------------------------------------------------ admission
    def add(self, rid: int, now: float) -> None:
        self.outstanding += 1
        r = self.r
        r.engine[rid] = self.eid
        if self.cfg.role == "decode":
            self.incoming.append(rid)
        else:
            r.ptotal[rid] = r.inp[rid]
            self.waiting.append(rid)

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
        r.ver[rid] += 1  # its heap entry is now stale
        return g

    def _preempt_one(self, now: float) -> float:
        """Preempt the most recently admitted running request; returns swap time to add (s)."""
        rid = self.running.pop()
        r = self.r
        r.preemptions[rid] += 1
        self.num_preemptions += 1
        if rid in self.prefilling:
            self.prefilling.remove(rid)
            self.pref_tokens -= r.prefilled[rid]
            r.prefilled[rid] = 0
            self.waiting.appendleft(rid)
            return 0.0
        g = self._leave_decode(rid)
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
    def step(self, now: float, next_arrival: float) -> float:
        """Run the next iteration (or closed-form run of decode iterations) starting at `now`;
        returns its end time. Completions are reported through the callbacks at that time."""
        cfg, r = self.cfg, self.r
        extra_s = 0.0
        # make room for the next decode token of every running sequence
        while self.n_dec and self.blocks_used(1) > self.cap_blocks and len(self.running) > 1:
            extra_s += self._preempt_one(now)

        # swapped-out requests come back first, while they fit
        while self.swapped and len(self.running) < cfg.max_num_seqs:
            rid = self.swapped[0]
            toks = r.inp[rid] + r.gen[rid]
            if self.blocks_used(1) + toks / cfg.block_size + 1 > self.cap_blocks:
                break
            self.swapped.popleft()
            self.swap_tokens -= toks
            extra_s += toks * cfg.kv_bytes_per_token / cfg.swap_bandwidth_bytes_per_s
            self.running.append(rid)
            self._join_decode(rid, r.gen[rid])

        # decode role: requests whose KV arrived join the decode set when they fit
        while self.incoming and len(self.running) < cfg.max_num_seqs:
            rid = self.incoming[0]
            if self.blocks_used(1) + (r.inp[rid] + 1) / cfg.block_size + 1 > self.cap_blocks and self.running:
                break
            self.incoming.popleft()
            if math.isnan(r.t_sched[rid]):
                r.t_sched[rid] = now
            self.running.append(rid)
            self._join_decode(rid, 1)

        chunks, finishing = self._schedule_prefill(now)
        if not chunks and self.n_dec == 0:
            # nothing runnable (e.g. KV full with only waiting work): idle until something changes
            self.busy_until = now
            return now
        if not chunks:
            return self._decode_run(now, next_arrival, extra_s)
        if len(chunks) == 1 and not finishing and len(self.prefilling) == 1 and cfg.chunked_prefill and not self.swapped:
            return self._chunk_run(now, chunks[0], extra_s)
        return self._iteration(now, chunks, finishing, extra_s)

    def _schedule_prefill(self, now: float) -> tuple[list[tuple[int, int]], list[int]]:
        """Pick prefill chunks for this iteration; returns (chunks as (new, cached), finishing rids)."""
        if not self.waiting and not self.prefilling:
            return [], []
        cfg, r = self.cfg, self.r
        if cfg.role == "decode":
            return [], []
        mixing = cfg.chunked_prefill
        if cfg.static_batching and (self.n_dec or self.prefilling):
            return [], []
        budget = cfg.max_num_batched_tokens - (self.n_dec if mixing else 0)
        chunks: list[tuple[int, int]] = []
        finishing: list[int] = []
        B = cfg.block_size
        used = self.blocks_used(1 if self.n_dec and mixing else 0)
        # continue partially prefilled requests
        for rid in self.prefilling:
            if budget <= 0:
                break
            rem = r.ptotal[rid] - r.prefilled[rid]
            q = min(rem, budget) if mixing else rem
            chunks.append((q, r.prefilled[rid]))
            budget -= q
            used += q / B
            if q == rem:
                finishing.append(rid)
        # admit new requests
        while self.waiting and budget > 0 and len(self.running) < cfg.max_num_seqs:
            rid = self.waiting[0]
            if r.prefilled[rid] == 0 and r.gen[rid] == 0:
                hit = self.prefix_match_tokens(rid)
                r.cached[rid] = hit
                r.prefilled[rid] = hit
            rem = r.ptotal[rid] - r.prefilled[rid]
            if not mixing and rem > budget and chunks:
                break  # whole prompts only; the next one waits for the next prefill iteration
            q = min(rem, budget) if mixing else rem
            need = (r.prefilled[rid] + q) / B + 1
            if used + need > self.cap_blocks and (self.running or chunks):
                break
            self.waiting.popleft()
            if math.isnan(r.t_sched[rid]):
                r.t_sched[rid] = now
            self.prompt_tokens += r.inp[rid] if r.gen[rid] == 0 else 0
            self.prefix_hit_tokens += r.cached[rid] if r.gen[rid] == 0 else 0
            self.running.append(rid)
            self.prefilling.append(rid)
            self.pref_tokens += r.prefilled[rid]
            chunks.append((q, r.prefilled[rid]))
            budget -= q
            used += need
            if q == rem:
                finishing.append(rid)
        return chunks, finishing

    def _iteration(self, now: float, chunks, finishing, extra_s: float) -> float:
        cfg, r = self.cfg, self.r
        mixing = cfg.chunked_prefill
        n_dec = self.n_dec if mixing else 0
        rows = n_dec + len(finishing)
        t = self.st.iteration(chunks, n_dec, self._dec_ctx_sum() if n_dec else 0, rows) + extra_s
        end = now + t
        # apply prefill progress (chunks were taken in self.prefilling order)
        for (q, _p), rid in zip(chunks, self.prefilling[: len(chunks)]):
            r.prefilled[rid] += q
            self.pref_tokens += q
        if n_dec:
            self._advance_ticks(1, end, [(t, n_dec)])
        elif self.n_dec:
            self._stall_s += t  # decodes wait behind a prefill-only iteration: part of their next ITL
        for rid in finishing:
            self.prefilling.remove(rid)
            self.pref_tokens -= r.prefilled[rid]
            self._cache_insert(rid)
            gen = r.gen[rid] + 1
            if r.gen[rid] == 0:
                r.t_first[rid] = end
            if gen >= r.out[rid] or cfg.role == "prefill":
                r.gen[rid] = gen
                self.running.remove(rid)
                self._done(rid, end)
            else:
                self._join_decode(rid, gen)
        self.num_iterations += 1
        return self._finish_step(now, end)

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
        while True:
            n = self.n_dec
            t = st.iteration([(q, p)], n, self._dec_ctx_sum() if n else 0, n) + extra_s
            extra_s = 0.0
            end += t
            r.prefilled[rid] += q
            self.pref_tokens += q
            p += q
            self.num_iterations += 1
            if n:
                self._advance_ticks(1, end, [(t, n)])
            budget = cfg.max_num_batched_tokens - self.n_dec
            if self.n_dec != n or r.ptotal[rid] - p <= budget or budget <= 0:
                break
            if self.blocks_used(1) + budget / cfg.block_size + 1 > self.cap_blocks:
                break
            q = budget
        return self._finish_step(now, end)

    def _advance_ticks(self, k: int, end: float, itl_samples) -> None:
        """k decode ticks happened, ending at `end`; pop the requests that completed."""
        self.tick += k
        if self.itl is not None:
            if self._stall_s:
                (v0, c0), n = itl_samples[0], self.n_dec
                self.itl.add(v0 + self._stall_s, n)  # the first token after a stall
                itl_samples = [(v0, c0 - n)] + list(itl_samples[1:])
            for v, c in itl_samples:
                if c > 0:
                    self.itl.add(v, c)
        self._stall_s = 0.0
        heap, r = self.heap, self.r
        while heap and heap[0][0] <= self.tick:
            _target, ver, rid = heapq.heappop(heap)
            if ver != r.ver[rid]:
                continue
            self.dec_base -= r.inp[rid] + r.gen[rid] - r.tick0[rid]
            r.gen[rid] = r.out[rid]
            self.n_dec -= 1
            r.ver[rid] += 1
            self.running.remove(rid)
            self._done(rid, end)

    def _decode_run(self, now: float, next_arrival: float, extra_s: float) -> float:
        """Decode-only iterations with an unchanging batch, advanced in closed form to the next event."""
        st, n = self.st, self.n_dec
        S = self._dec_ctx_sum()
        # stale heap tops do not bound the run
        heap, r = self.heap, self.r
        while heap and heap[0][1] != r.ver[heap[0][2]]:
            heapq.heappop(heap)
        k_done = max(1, heap[0][0] - self.tick) if heap else 1
        # KV exhaustion: blocks_used(k) <= cap
        B = self.cfg.block_size
        room = self.cap_blocks * B - (S + self.pref_tokens + (n + len(self.prefilling)) * (B - 1) * 0.5)
        k_kv = max(1, int(room // n)) if n else k_done
        k = min(k_done, k_kv)
        # a new arrival (or, for a decode engine, a KV hand-off) could join at the next boundary
        admissible = len(self.running) < self.cfg.max_num_seqs and not self.cfg.static_batching
        a = st.decode_step(n, S) + extra_s
        if k > 1:
            b = (st.decode_step(n, S + n * (k - 1)) - a + extra_s) / (k - 1)
        else:
            b = 0.0
        if admissible and not self.waiting and not self.incoming and next_arrival < math.inf and k > 1:
            # stop at the first iteration boundary at or after the next arrival
            dt = next_arrival - now
            # smallest k' with k' a + b k'(k'-1)/2 >= dt
            if b > 1e-15:
                kk = math.ceil((-(a - b / 2) + math.sqrt((a - b / 2) ** 2 + 2 * b * dt)) / b)
            else:
                kk = math.ceil(dt / a)
            k = max(1, min(k, kk))
        total = k * a + b * k * (k - 1) / 2
        end = now + total
        if k > 1:
            h = k // 2
            samples = [(a + b * (h - 1) / 2, n * h), (a + b * (h + (k - 1)) / 2, n * (k - h))]
        else:
            samples = [(a, n)]
        self._advance_ticks(k, end, samples)
        self.num_iterations += k
        return self._finish_step(now, end)

    def _finish_step(self, now: float, end: float) -> float:
        self.busy_s += end - now
        self.busy_until = end
        if self.num_iterations % self._kv_stride == 0:
            self.kv_samples.append((end, self.kv_utilisation()))
            if len(self.kv_samples) >= 20_000:
                self.kv_samples = self.kv_samples[::2]
                self._kv_stride *= 2
        return end

    def _done(self, rid: int, t: float) -> None:
        self.outstanding -= 1
        self.on_finish(rid, t, self)

    def _cache_insert(self, rid: int) -> None:
        h = self.r.hash_ids
        if h is None or not self.cfg.prefix_caching:
            return
        lru = self._lru
        for x in h[rid]:
            x = int(x)
            if x in lru:
                lru.move_to_end(x)
            else:
                lru[x] = None
        while len(lru) > self._lru_cap:
            lru.popitem(last=False)
