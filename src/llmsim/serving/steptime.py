"""Fast iteration time for the serving simulator, built on the operator cost model.

An engine iteration's time splits into parts that depend on different aspects of the batch:

    t = body(T) + head(R) + prefill_attention(chunks) + decode_attention(n, C) + cpu_overhead

- body(T): every operator whose shape depends only on the number of tokens T in the
  iteration (QKV/O/MLP/MoE GEMMs, norms, TP all-reduces, EP all-to-all, PP send/recv).
- head(R): final norm + LM head + logits gather for the R sequences that sample a token.
- prefill_attention: each prefill chunk (q new tokens after p cached), incl. MLA's
  latent decompression.
- decode_attention(n, C): n decode tokens whose contexts sum to C (incl. MLA absorption).

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
from functools import lru_cache

from ..cost.model import CostModel
from ..cost.ops import Batch, OpBuilder
from ..layout import Parallel, Precision
from ..models.spec import ModelSpec

_ATTN_NAMES = frozenset({"attn_prefill", "attn_decode", "kv_b_proj", "mla_q_absorb", "mla_v_absorb"})
_HEAD_NAMES = frozenset({"final_norm", "lm_head", "logits_allgather"})
_EXACT_T = 512
_GRID_RATIO = 1.03


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


def _bilinear(f, gx: tuple[int, int, float], gy: tuple[int, int, float]) -> float:
    """Interpolate f between the grid points bracketing x and y (from `_grid`)."""
    x0, x1, wx = gx
    y0, y1, wy = gy
    a = f(x0, y0)
    if wy:
        a += (f(x0, y1) - a) * wy
    if wx:
        b = f(x1, y0)
        if wy:
            b += (f(x1, y1) - b) * wy
        a += (b - a) * wx
    return a


def _remember(memo: dict, key, value: float, limit: int = 1 << 20) -> None:
    if len(memo) > limit:
        memo.clear()
    memo[key] = value


class StepTimeModel:
    """Iteration time of one engine (one model replica: tp x pp x dp GPUs)."""

    def __init__(self, model: ModelSpec, par: Parallel, prec: Precision, cost: CostModel, cpu_overhead_s: float = 0.0):
        self.model, self.par, self.prec, self.cost = model, par, prec, cost
        self.cpu_overhead_s = cpu_overhead_s
        self.builder = OpBuilder(model, par, prec)
        self._body: dict[int, float] = {}
        self._head: dict[int, float] = {}
        self._pre: dict[tuple[int, int], float] = {}
        self._dec: dict[tuple[int, int], float] = {}
        self._pre_memo: dict[tuple[int, int], float] = {}  # interpolated values, by exact arguments
        self._dec_memo: dict[tuple[int, int], float] = {}

    # ------------------------------------------------------------------ parts
    def _sum(self, batch: Batch, keep) -> float:
        return sum(self.cost.cost(o).total_s for o in self.builder.build(batch) if keep(o.name))

    def _body_exact(self, T: int) -> float:
        t = self._body.get(T)
        if t is None:
            t = self._body[T] = self._sum(Batch([(T, 0)], []), lambda n: n not in _ATTN_NAMES and n not in _HEAD_NAMES)
        return t

    def body(self, T: int) -> float:
        lo, hi, w = _grid(T, _EXACT_T, _GRID_RATIO)
        t_lo = self._body_exact(lo)
        return t_lo if w == 0.0 else t_lo + (self._body_exact(hi) - t_lo) * w

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
        key = (q, past)
        v = self._pre_memo.get(key)
        if v is None:
            v = _bilinear(self._pre_exact, _grid(q, 32, 1.1), _grid(past, 32, 1.1))
            _remember(self._pre_memo, key, v)
        return v

    def _dec_exact(self, n: int, c: int) -> float:
        key = (n, c)
        t = self._dec.get(key)
        if t is None:
            t = self._dec[key] = self._attn_sum(Batch([], [c] * n))
        return t

    def decode_attention(self, n: int, ctx_sum: float) -> float:
        """Bilinear on a grid: n exact up to 16 then ratio 1.1; mean context exact up to 64 then ratio 1.05."""
        if n <= 0:
            return 0.0
        key = (n, max(1, round(ctx_sum / n)))
        v = self._dec_memo.get(key)
        if v is None:
            v = _bilinear(self._dec_exact, _grid(n, 16, 1.1), _grid(key[1], 64, 1.05))
            _remember(self._dec_memo, key, v)
        return v

    # ------------------------------------------------------------------ whole iteration
    def iteration(self, chunks: list[tuple[int, int]], n_decode: int, decode_ctx_sum: float, sampling_rows: int) -> float:
        """Seconds for one iteration: prefill `chunks` (new, cached) + n_decode decode tokens."""
        if len(chunks) == 1:
            q, p = chunks[0]
            t = self.body(n_decode + q) + self.prefill_attention(q, p)
        else:
            t = self.body(n_decode + sum(q for q, _ in chunks))
            for q, p in chunks:
                t += self.prefill_attention(q, p)
        h = self._head.get(sampling_rows)
        t += (h if h is not None else self.head(max(sampling_rows, 1))) + self.cpu_overhead_s
        if n_decode:
            t += self.decode_attention(n_decode, decode_ctx_sum)
        return t

    def decode_step(self, n: int, ctx_sum: float) -> float:
        """A decode-only iteration of n sequences whose contexts sum to ctx_sum."""
        return self.body(n) + self.head(n) + self.decode_attention(n, ctx_sum) + self.cpu_overhead_s

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
