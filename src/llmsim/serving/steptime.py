"""Fast iteration time for the serving simulator, built on the operator cost model.

An engine iteration's time splits into parts that depend on different aspects of the batch:

    t = body(T) + head(R) + prefill_attention(chunks) + decode_attention(n, C) + cpu_overhead
        [+ prefill_fixed if the iteration carries prefill chunks]

- body(T): every operator whose shape depends only on the number of tokens T in the
  iteration (QKV/O/MLP/MoE GEMMs, norms, TP all-reduces, EP all-to-all, PP send/recv).
- head(R): final norm + LM head + logits gather for the R sequences that sample a token.
- prefill_attention: each prefill chunk (q new tokens after p cached), incl. MLA's
  latent decompression. The chunks of one iteration share one attention kernel (as the engines'
  variable-length FlashAttention / FlashInfer / TRT-LLM FMHA calls do, and as `estimate` prices
  a batch): with k chunks each is priced at its share of a k-chunk batch of its own shape,
  attention(k x (q, p)) / k, so launches and SM waves are shared instead of paid k times.
- decode_attention(n, C): n decode tokens whose contexts sum to C (incl. MLA absorption).
- prefill_fixed: `Backend.prefill_layer_s` x layers + `Backend.prefill_moe_layer_s` x MoE
  layers on roofline-timed GPUs; on GPUs whose measured kernel tables time the dense GEMMs and
  attention, `Backend.prefill_table_moe_layer_s` x MoE layers (no table times a fused-MoE
  kernel); plus `Backend.prefill_mla_layer_s` x layers of an MLA model on roofline-timed GPUs.
  Fitted; see backends.py. `Backend.step_time` passes the per-layer, MoE and MLA values only
  for the Blackwell parts they were fitted on (`Backend.prefill_fixed_for`; elsewhere 0, the
  table value and 0).

Speculative decoding (`specdecode`, spec_draft_tokens k > 0): every decode sequence verifies
q = k + 1 tokens (q tokens through body and head, attention of q queries over its KV), the
draft head adds `_draft` (one layer over the iteration's tokens, k - 1 more over the newest
drafts, k LM-head samplings), and a decode-only iteration is charged per token it yields:
its time / spec_tokens_per_step, as the engine still counts one token per decode tick.

With attention DP (dp > 1) the iteration takes as long as the busiest rank: each prefill
chunk runs whole on one rank (chunks placed largest-first on the least-loaded rank), decodes
are spread evenly (ceil(n / dp) on the busiest), and only the routed experts see the tokens of
all ranks (`_iteration_dp`). In such an iteration that runs prefill, an engine whose prefill
all-to-all kernels reach only `prefill_a2a_bw_bytes_s` per GPU (`Backend.prefill_a2a_bw_bytes_s`:
SGLang's DeepEP normal mode) adds what its dispatch / combine take beyond the collective model's
time (`_a2a_extra_exact`).

Each part is computed by `llmsim.cost` (the same operators and measured/roofline times as
`llmsim estimate`) on first use and cached. body(T) is evaluated exactly for T ≤ 512 and on
a geometric grid (ratio 1.03) above, linearly interpolated between grid points.
decode_attention is bilinear on a grid of (n, mean context) (exact up to 16 / 64, then
ratios 1.1 / 1.05); prefill_attention on (chunk, cached tokens) (exact up to 32, then 1.1).
Interpolation error against exact evaluation (tests/test_serve.py checks it): median < 0.3%,
p90 < 1.5%; the rare larger errors sit at SM-wave steps, which the grid smooths. So an iteration costs a few dict
lookups once warm, which is what lets the simulator run ~10^5 iterations per second.
"""

from __future__ import annotations

import math
from array import array
from functools import lru_cache

from ..cost.model import CostModel
from ..cost.ops import Batch, OpBuilder
from ..layout import Parallel, Precision
from ..models.spec import ModelSpec

_ATTN_NAMES = frozenset({"attn_prefill", "attn_decode", "kv_b_proj", "mla_q_absorb", "mla_v_absorb", "gdn_prefill", "gdn_decode",
                         "dsa_indexer"})
_HEAD_NAMES = frozenset({"final_norm", "lm_head", "logits_allgather"})
# with attention DP, the routed-expert work is spread over the EP group whatever rank the tokens
# came from; every other operator runs on one attention-DP rank's own tokens
_GLOBAL_NAMES = frozenset({"moe_experts_up", "moe_experts_down", "moe_act"})
# the expert-parallel all-to-alls of an attention-DP rank (`_a2a_extra_exact`)
_A2A_NAMES = frozenset({"moe_dispatch", "moe_combine"})
_EXACT_T = 512
_GRID_RATIO = 1.03
_DEC_SLOTS = 1 << 23  # decode-attention memo entries (8 bytes each) kept at most


@lru_cache(maxsize=1 << 18)
def _grid(x: int, exact_upto: int, ratio: float) -> tuple[int, int, float]:
    """Grid points bracketing x (exact below `exact_upto`, geometric above) and the weight of the upper one."""
    if x <= exact_upto:
        return x, x, 0.0
    i = math.floor(math.log(x / exact_upto, ratio))
    lo = max(exact_upto, round(exact_upto * ratio**i))
    hi = round(exact_upto * ratio ** (i + 1))
    while hi <= lo:
        i += 1
        hi = round(exact_upto * ratio ** (i + 1))
    if lo > x:  # rounding
        lo = x
    return lo, hi, (x - lo) / (hi - lo)


_MEMO_ENTRIES = 1 << 18  # interpolated values kept per memo (~100 bytes each, so <= ~26 MB); a full memo starts over


def _remember(memo: dict, key, value, limit: int = _MEMO_ENTRIES) -> None:
    if len(memo) > limit:
        memo.clear()
    memo[key] = value


def _memo1(memo: dict, exact, x: int) -> float:
    """exact(x) interpolated linearly on the `_grid` (exact up to _EXACT_T, ratio _GRID_RATIO), remembered under x."""
    v = memo.get(x)
    if v is None:
        lo, hi, w = _grid(x, _EXACT_T, _GRID_RATIO)
        t_lo = exact(lo)
        v = t_lo if w == 0.0 else t_lo + (exact(hi) - t_lo) * w
        _remember(memo, x, v)
    return v


def _memo2(memo: dict, interp, q: int, past: int) -> float:
    """interp(q, past), remembered under the int past << 32 | q."""
    key = past << 32 | q
    v = memo.get(key)
    if v is None:
        v = interp(q, past)
        _remember(memo, key, v)
    return v


def _batch_bucket(k: int) -> int:
    """Batch sizes of shared prefill-attention kernels: exact up to 8, then the nearest of a
    geometric grid (ratio 1.25: 8, 10, 12, 16, 20, 24, 30, ...)."""
    if k <= 8:
        return k
    return max(8, round(8 * 1.25 ** round(math.log(k / 8, 1.25))))


class _Bilinear:
    """f(x, y) interpolated bilinearly between the grid points bracketing x and y (`_grid`).

    `f` is exact and slow (the cost model); each grid cell keeps the four corner values
    it needs together, so interpolating at a new point is two grid look-ups, one cell
    look-up and a few multiply-adds."""

    def __init__(self, f, x_grid: tuple[int, float], y_grid: tuple[int, float]):
        self.f, self.x_grid, self.y_grid = f, x_grid, y_grid
        self._gx: dict[int, tuple[int, int, float]] = {}  # `_grid` of each argument seen
        self._gy: dict[int, tuple[int, int, float]] = {}
        self._cells: dict[tuple[int, int, int, int], tuple[float, float, float, float]] = {}

    def __call__(self, x: int, y: int) -> float:
        gx = self._gx.get(x)
        if gx is None:
            gx = _grid(x, *self.x_grid)
            _remember(self._gx, x, gx)
        gy = self._gy.get(y)
        if gy is None:
            gy = _grid(y, *self.y_grid)
            _remember(self._gy, y, gy)
        x0, x1, wx = gx
        y0, y1, wy = gy
        key = (x0, x1, y0, y1)
        c = self._cells.get(key)
        if c is None:
            f = self.f
            c = self._cells[key] = (f(x0, y0), f(x0, y1), f(x1, y0), f(x1, y1))
        a = c[0]
        if wy:
            a += (c[1] - a) * wy
        if wx:
            b = c[2]
            if wy:
                b += (c[3] - b) * wy
            a += (b - a) * wx
        return a


class StepTimeModel:
    """Iteration time of one engine (one model replica: tp x pp x dp GPUs)."""

    def __init__(self, model: ModelSpec, par: Parallel, prec: Precision, cost: CostModel, cpu_overhead_s: float = 0.0,
                 cpu_per_seq_s: float = 0.0, prefill_layer_s: float = 0.0, prefill_moe_layer_s: float = 0.0,
                 prefill_table_moe_layer_s: float = 0.0, prefill_mla_layer_s: float = 0.0, fused_norm_tokens: int = 0,
                 ep_imbalance: float = 1.0, spec_draft_tokens: int = 0, spec_tokens_per_step: float = 1.0,
                 prefill_a2a_bw_bytes_s: float = 0.0):
        self.model, self.par, self.prec, self.cost = model, par, prec, cost
        # speculative decoding (`specdecode`): k drafts per step, each decode sequence verifies
        # q = k + 1 tokens, and a decode-only iteration's time is the step's / tokens per step
        self.spec_k = spec_draft_tokens
        self._q = spec_draft_tokens + 1
        self.spec_tokens_per_step = spec_tokens_per_step if spec_draft_tokens else 1.0
        self._per_tick = 1.0 / self.spec_tokens_per_step
        self.cpu_overhead_s = cpu_overhead_s
        self.cpu_per_seq_s = cpu_per_seq_s
        # fixed time per model layer (all pipeline stages: the latency path) of an iteration that
        # runs prefill chunks, which the roofline does not produce (`Backend.prefill_layer_s`);
        # only where no measured kernel tables time this GPU's operators
        self.prefill_layer_s = prefill_layer_s if cost.kernels is None else 0.0
        # and more per MoE layer (the fused-MoE path: routing, token permutation, kernel set-up;
        # `Backend.prefill_moe_layer_s`), likewise only where no kernel tables time the GPU; where
        # they do, they time no fused-MoE kernel, so its MoE layers take `prefill_table_moe_layer_s`
        self.prefill_moe_layer_s = prefill_moe_layer_s if cost.kernels is None else prefill_table_moe_layer_s
        # and more per multi-head-latent-attention layer (`Backend.prefill_mla_layer_s`), likewise
        self.prefill_mla_layer_s = prefill_mla_layer_s if cost.kernels is None and model.is_mla else 0.0
        self.prefill_fixed_s = (self.prefill_layer_s * model.num_layers + self.prefill_moe_layer_s * model.num_moe_layers
                                + self.prefill_mla_layer_s * model.num_layers)
        # host time per sequence in the batch, per attention-DP rank (each rank schedules its own share)
        self._per_row_s = cpu_per_seq_s / max(par.dp, 1)
        # the engine's all-reduce + residual + RMSNorm fusion (`Backend.fused_norm_tokens`) and the
        # expert-parallel load imbalance (`Deployment.ep_imbalance`; 1 = balanced)
        self.builder = OpBuilder(model, par, prec, fused_norm_tokens, ep_imbalance)
        self._body: dict[int, float] = {}
        self._head: dict[int, float] = {}
        self._pre: dict[tuple[int, int], float] = {}
        self._dec: dict[tuple[int, int], float] = {}
        # interpolated values by exact arguments: body by T; prefill attention by the int
        # p << 32 | q (q < 2**32 tokens; ints hash and compare faster than tuples); decode
        # attention in rows, one per decode count n, indexed by mean context (`_dec_store`)
        self._body_memo: dict[int, float] = {}
        self._pre_memo: dict[int, float] = {}
        self._dec_rows: list[array] = []
        self._dec_slots = 0
        self._pre_interp = _Bilinear(self._pre_exact, (32, 1.1), (32, 1.1))
        # chunks sharing an iteration's attention kernel: per batch-size bucket k (`_batch_bucket`),
        # a chunk's share of a k-chunk batch of its shape, interpolated like prefill_attention
        self._pre_k: dict[int, _Bilinear] = {}
        self._pre_k_memo: dict[tuple[int, int], float] = {}  # (k bucket, past << 32 | q), all buckets in one bounded memo
        self._dec_interp = _Bilinear(self._dec_exact, (16, 1.1), (64, 1.05))
        # attention DP (dp > 1): the busiest rank sets the iteration time (`_iteration_dp`)
        self._dp = max(par.dp, 1)
        self._rank: dict[int, float] = {}
        self._glob: dict[int, float] = {}
        self._rank_memo: dict[int, float] = {}
        self._glob_memo: dict[int, float] = {}
        self._pre1: dict[tuple[int, int], float] = {}
        self._pre1_memo: dict[int, float] = {}
        self._pre1_interp = _Bilinear(self._pre1_exact, (32, 1.1), (32, 1.1))
        # the bandwidth the engine's all-to-all kernels reach in iterations that run prefill
        # (`Backend.prefill_a2a_bw_bytes_s`; 0: the collective model's, as in decode). Only
        # attention-DP pools with expert parallelism run all-to-alls.
        self.prefill_a2a_bw_bytes_s = prefill_a2a_bw_bytes_s if self._dp > 1 and par.ep > 1 else 0.0
        self._a2a_extra: dict[int, float] = {}
        self._a2a_extra_memo: dict[int, float] = {}
        # (iteration, one_chunk and decode_step hand dp > 1 to their `_dp` forms: one check per
        # call; the compiled build, setup.py, allows no per-instance method override)

    # ------------------------------------------------------------------ parts
    def _sum(self, batch: Batch, keep) -> float:
        return sum(self.cost.cost(o).total_s for o in self.builder.build(batch) if keep(o.name))

    def _body_exact(self, T: int) -> float:
        t = self._body.get(T)
        if t is None:
            t = self._body[T] = self._sum(Batch([(T, 0)], []), lambda n: n not in _ATTN_NAMES and n not in _HEAD_NAMES)
        return t

    def body(self, T: int) -> float:
        return _memo1(self._body_memo, self._body_exact, T)

    def head(self, rows: int) -> float:
        t = self._head.get(rows)
        if t is None:
            t = self._head[rows] = self._sum(Batch([], [1] * rows), lambda n: n in _HEAD_NAMES)
        return t

    def _attn_sum(self, batch: Batch) -> float:
        """Attention-dependent operators of a batch (MLA also decompresses / absorbs with GEMMs)."""
        if self.model.is_mla:
            return self._sum(batch, lambda n: n in _ATTN_NAMES)
        share = 1.0 / self.par.dp
        return sum(self.cost.cost(o).total_s for g in self.model.layer_groups for o in self.builder.attention_ops(batch, g, share))

    def _pre_exact(self, q: int, p: int) -> float:
        key = (q, p)
        t = self._pre.get(key)
        if t is None:
            t = self._pre[key] = self._attn_sum(Batch([(q, p)], []))
        return t

    def prefill_attention(self, q: int, past: int) -> float:
        """Bilinear on a grid: chunk and cached lengths exact up to 32, then ratio 1.1."""
        return _memo2(self._pre_memo, self._pre_interp, q, past)

    def prefill_attention_shared(self, q: int, past: int, k: int) -> float:
        """One chunk's share of an attention kernel that runs k chunks (k >= 2): attention(k x
        (q, past)) / k, k on the `_batch_bucket` grid, bilinear in (q, past) as prefill_attention."""
        kb = _batch_bucket(k)
        interp = self._pre_k.get(kb)
        if interp is None:
            def share(x: int, y: int, kb: int = kb) -> float:
                return self._attn_sum(Batch([(x, y)] * kb, [])) / kb
            interp = self._pre_k[kb] = _Bilinear(share, (32, 1.1), (32, 1.1))
        key = (kb, past << 32 | q)
        v = self._pre_k_memo.get(key)
        if v is None:
            v = interp(q, past)
            _remember(self._pre_k_memo, key, v)
        return v

    def _dec_exact(self, n: int, c: int) -> float:
        key = (n, c)
        t = self._dec.get(key)
        if t is None:
            t = self._dec[key] = self._attn_sum(Batch([], [c] * n, self._q))
        return t

    def decode_attention(self, n: int, ctx_sum: float) -> float:
        """Bilinear on a grid: n exact up to 16 then ratio 1.1; mean context exact up to 64 then ratio 1.05."""
        if n <= 0:
            return 0.0
        c = round(ctx_sum / n)
        if c < 1:
            c = 1
        try:
            v = self._dec_rows[n][c]
        except IndexError:
            v = -1.0
        if v < 0.0:  # not computed yet
            v = self._dec_interp(n, c)
            self._dec_store(n, c, v)
        return v

    def _dec_store(self, n: int, c: int, v: float) -> None:
        """Keep decode_attention(n, c) at _dec_rows[n][c] (-1.0 marks a gap). A flat float array
        per n beats a dict on the simulator's pattern (a few batch sizes, slowly growing mean
        contexts): no key objects, no hashing, neighbours in neighbouring memory. Rows grow on
        demand; past `_DEC_SLOTS` entries in all they are dropped and refilled."""
        rows = self._dec_rows
        while len(rows) <= n:
            rows.append(array("d"))
        row = rows[n]
        if c >= len(row):
            grow = max(c + 1, 2 * len(row), 256) - len(row)
            if self._dec_slots + grow > _DEC_SLOTS:
                if grow > _DEC_SLOTS:
                    return  # a context too long to keep: recomputed on every call
                self._dec_rows, self._dec_slots = [], 0
                return self._dec_store(n, c, v)
            row.extend(array("d", [-1.0]) * grow)
            self._dec_slots += grow
        row[c] = v

    # ------------------------------------------------------------------ attention DP
    # With dp > 1 attention-DP ranks each run their own requests, and every layer's MoE
    # all-to-all makes them wait for each other: the iteration takes as long as the busiest
    # rank. A prefill chunk runs on one rank (its attention and dense operators are not split
    # dp ways); decodes are spread evenly (the engines balance requests across ranks); the
    # routed experts see the tokens of all ranks, spread over the EP group.
    def _rank_exact(self, Tr: int) -> float:
        """Per-rank operators (everything but the routed experts, attention and head) of a rank holding Tr tokens."""
        t = self._rank.get(Tr)
        if t is None:
            skip = _ATTN_NAMES | _HEAD_NAMES | _GLOBAL_NAMES
            t = self._rank[Tr] = self._sum(Batch([(Tr * self._dp, 0)], []), lambda n: n not in skip)
        return t

    def _glob_exact(self, T: int) -> float:
        """Routed-expert operators of an iteration with T tokens over all ranks."""
        t = self._glob.get(T)
        if t is None:
            t = self._glob[T] = self._sum(Batch([(T, 0)], []), lambda n: n in _GLOBAL_NAMES)
        return t

    def _a2a_extra_exact(self, Tr: int) -> float:
        """Seconds the dispatch / combine all-to-alls of a rank holding Tr tokens take beyond the
        collective model's time in an iteration that runs prefill, where the engine's kernels move
        at most `prefill_a2a_bw_bytes_s` bytes/s: per operator max(0, (g - 1) / g x S / bw - t), for its
        message of S bytes over the g GPUs of the EP group."""
        t = self._a2a_extra.get(Tr)
        if t is None:
            t = 0.0
            for o in self.builder.build(Batch([(Tr * self._dp, 0)], [])):
                if o.name in _A2A_NAMES:
                    g = o.shape[1]
                    floor_s = (g - 1) / g * o.bytes / self.prefill_a2a_bw_bytes_s
                    t += max(0.0, floor_s - self.cost.cost(o).time_s) * o.count
            self._a2a_extra[Tr] = t
        return t

    def _pre1_exact(self, q: int, p: int) -> float:
        """Attention operators of one prefill chunk run whole on one rank."""
        key = (q, p)
        t = self._pre1.get(key)
        if t is None:
            t = self._pre1[key] = self._attn_sum(Batch([(q, p)] * self._dp, []))
        return t

    def prefill_attention_one_rank(self, q: int, past: int) -> float:
        return _memo2(self._pre1_memo, self._pre1_interp, q, past)

    def _iteration_dp(self, chunks, n_decode: int, decode_ctx_sum: float, sampling_rows: int) -> float:
        dp = self._dp
        dec_rank = -(-n_decode // dp) * self._q  # decode tokens on the busiest rank
        T = n_decode * self._q
        for q, _p in chunks:
            T += q
        if len(chunks) == 1:
            busiest = chunks
            chunk_tokens = chunks[0][0]
        elif chunks:  # largest chunks first, each onto the least-loaded rank
            loads = [0] * dp
            members: list[list[tuple[int, int]]] = [[] for _ in range(dp)]
            for q, p in sorted(chunks, reverse=True):
                i = loads.index(min(loads))
                loads[i] += q
                members[i].append((q, p))
            j = loads.index(max(loads))
            busiest, chunk_tokens = members[j], loads[j]
        else:
            busiest, chunk_tokens = (), 0
        t = self._dp_step(dec_rank + chunk_tokens, T, busiest)
        if chunks:
            t += self.prefill_fixed_s
            if self.prefill_a2a_bw_bytes_s:
                t += _memo1(self._a2a_extra_memo, self._a2a_extra_exact, dec_rank + chunk_tokens)
        if self.spec_k:  # the busiest rank's share of each draft pass
            t += self._draft(self._dp_step(dec_rank + chunk_tokens, T, ()), n_decode, decode_ctx_sum)
        t += self._tail(n_decode, decode_ctx_sum, sampling_rows)
        return t if chunks else t * self._per_tick

    def _dp_step(self, rank_tokens: int, total_tokens: int, busiest_chunks) -> float:
        """Seconds of an attention-DP iteration before its tail: the busiest rank's per-rank
        operators for its `rank_tokens` and the attention of its chunks, plus the operators that
        see every rank's tokens (experts, all-to-alls) for `total_tokens`."""
        t = _memo1(self._rank_memo, self._rank_exact, rank_tokens)
        t += _memo1(self._glob_memo, self._glob_exact, total_tokens)
        for q, p in busiest_chunks:
            t += self.prefill_attention_one_rank(q, p)
        return t

    def iteration_ranked(self, chunks, ranks, sampling_rows: int) -> float:
        """A prefill-only iteration whose chunks sit on given attention-DP ranks (chunks[i] on
        ranks[i]): the rank with the most tokens sets the per-rank time, the experts see them all."""
        loads: dict[int, int] = {}
        T = 0
        for (q, _p), k in zip(chunks, ranks):
            loads[k] = loads.get(k, 0) + q
            T += q
        j = max(loads, key=loads.__getitem__) if loads else -1
        busiest = [c for c, k in zip(chunks, ranks) if k == j]
        t = self._dp_step(loads.get(j, 0), T, busiest)
        if chunks:
            t += self.prefill_fixed_s
            if self.prefill_a2a_bw_bytes_s:
                t += _memo1(self._a2a_extra_memo, self._a2a_extra_exact, loads.get(j, 0))
        if self.spec_k:
            t += self._draft(self._dp_step(loads.get(j, 0), T, ()), 0, 0.0)
        return t + self._tail(0, 0.0, sampling_rows)

    def _one_chunk_dp(self, q: int, p: int, n_decode: int, decode_ctx_sum: float, sampling_rows: int) -> float:
        return self._iteration_dp(((q, p),), n_decode, decode_ctx_sum, sampling_rows)

    def _decode_step_dp(self, n: int, ctx_sum: float) -> float:
        return self._iteration_dp((), n, ctx_sum, n)

    def _tail(self, n_decode: int, decode_ctx_sum: float, sampling_rows: int) -> float:
        """LM head of the sampled rows (and of the k drafts each decode verifies), host time and
        decode attention: the parts every iteration adds."""
        t = self.head_s(sampling_rows + n_decode * self.spec_k) + self.cpu_overhead_s + self._per_row_s * sampling_rows
        if n_decode:
            t += self.decode_attention(n_decode, decode_ctx_sum)
        return t

    # ------------------------------------------------------------------ whole iteration
    def iteration(self, chunks: list[tuple[int, int]], n_decode: int, decode_ctx_sum: float, sampling_rows: int) -> float:
        """Seconds for one iteration: prefill `chunks` (new, cached) + n_decode decode tokens."""
        if self._dp > 1:
            return self._iteration_dp(chunks, n_decode, decode_ctx_sum, sampling_rows)
        if len(chunks) == 1:
            q, p = chunks[0]
            return self.one_chunk(q, p, n_decode, decode_ctx_sum, sampling_rows)
        T = n_decode * self._q
        for q, _p in chunks:
            T += q
        body = t = self.body(T)
        k = len(chunks)
        for q, p in chunks:  # (k >= 2 here: one chunk went to `one_chunk`)
            t += self.prefill_attention_shared(q, p, k)
        if chunks:
            t += self.prefill_fixed_s
        if self.spec_k:
            t += self._draft(body, n_decode, decode_ctx_sum)
        t += self._tail(n_decode, decode_ctx_sum, sampling_rows)
        return t if chunks else t * self._per_tick

    # The two calls below are the simulator's innermost code (a few per simulated request), so
    # they look up the memos of `body`, `prefill_attention` and `head` themselves and fall back
    # to those methods on a miss. Same values, same order of additions as the methods.

    def one_chunk(self, q: int, p: int, n_decode: int, decode_ctx_sum: float, sampling_rows: int) -> float:
        """`iteration` with one prefill chunk: q new tokens after p cached."""
        if self._dp > 1:
            return self._one_chunk_dp(q, p, n_decode, decode_ctx_sum, sampling_rows)
        T = n_decode * self._q + q
        body = self._body_memo.get(T)
        if body is None:
            body = self.body(T)
        key = p << 32 | q
        pre = self._pre_memo.get(key)
        if pre is None:  # `prefill_attention`, its frames skipped (most chunks here are new shapes)
            pre = self._pre_interp(q, p)
            _remember(self._pre_memo, key, pre)
        t = body + pre + self.prefill_fixed_s
        if self.spec_k:
            return t + self._draft(body, n_decode, decode_ctx_sum) + self._tail(n_decode, decode_ctx_sum, sampling_rows)
        h = self._head.get(sampling_rows)
        t += (h if h is not None else self.head(max(sampling_rows, 1))) + self.cpu_overhead_s + self._per_row_s * sampling_rows
        if n_decode:
            t += self.decode_attention(n_decode, decode_ctx_sum)
        return t

    def host_s(self, sampling_rows: int) -> float:
        """The host part of an iteration's time that samples `sampling_rows` rows (scheduling, input
        preparation, output handling): in a pipeline it occupies no stage."""
        return self.cpu_overhead_s + self._per_row_s * sampling_rows

    def head_s(self, sampling_rows: int) -> float:
        """The LM-head part (final norm, LM head, logits gather) of an iteration that samples
        `sampling_rows` rows, as `iteration` adds it: in a pipeline the last stage runs it."""
        h = self._head.get(sampling_rows)
        return h if h is not None else self.head(max(sampling_rows, 1))

    def decode_step(self, n: int, ctx_sum: float) -> float:
        """A decode-only iteration of n sequences whose contexts sum to ctx_sum."""
        if self._dp > 1:
            return self._decode_step_dp(n, ctx_sum)
        if self.spec_k:  # a verify step of q = k + 1 tokens per sequence and its drafts, per token it yields
            verify_s = self.body(n * self._q)
            return (verify_s + self._draft(verify_s, n, ctx_sum) + self._tail(n, ctx_sum, n)) * self._per_tick
        body = self._body_memo.get(n)
        if body is None:
            body = self.body(n)
        h = self._head.get(n)
        if h is None:
            h = self.head(n)
        return body + h + self.decode_attention(n, ctx_sum) + self.cpu_overhead_s + self._per_row_s * n

    def _draft(self, body_all_s: float, n: int, ctx_sum: float) -> float:
        """The draft head's k passes in an iteration (`specdecode`): one decoder layer over all its
        tokens (the verified positions and any prompt tokens, whose hidden states the head extends
        from), then k - 1 more over the n decode sequences' newest draft, each of the k passes
        sampling n rows from the shared LM head. A layer's time is the model's per-layer mean: the
        iteration's body time (`body_all_s`; with attention DP the busiest rank's) or n tokens'
        over its layers; its attention the verify's per layer."""
        k, L = self.spec_k, self.model.num_layers
        if not n:
            return body_all_s / L
        t = body_all_s
        if k > 1:  # the later passes: n tokens, with attention DP ceil(n / dp) on the busiest rank
            t += (k - 1) * (self.body(n) if self._dp == 1 else self._dp_step(-(-n // self._dp), n, ()))
        return t / L + k * (self.head_s(n) + self.decode_attention(n, ctx_sum) / L)

    def decode_run(self, n: int, ctx_sum: float, steps: int) -> float:
        """Total time of `steps` consecutive decode-only iterations of the same n sequences, each
        adding one token per sequence (ctx_sum grows by n per step): trapezoid rule on the
        first and last step, exact while attention time is affine in context."""
        if steps <= 0:
            return 0.0
        first = self.decode_step(n, ctx_sum)
        if steps == 1:
            return first
        last = self.decode_step(n, ctx_sum + n * (steps - 1))
        return steps * 0.5 * (first + last)
