"""The planner's workload: request lengths (and shared prefixes) to evaluate candidates on.

One seeded pool of (input, output) lengths is drawn once per plan — fixed ISL/OSL, length
distributions, lengths resampled from a trace, or a trace's own rows — and every simulation
takes its first n requests, so all candidates see the same requests (deterministic for a seed).

Shared prefix (`prefix` tokens, e.g. a system prompt): every request gets the same leading
prefix-cache block id, with the block as long as the prefix rounded down to whole KV blocks of
16 tokens (engines cache only full blocks: a 500-token prefix gives 496 cached tokens). The
first request on an engine misses and later ones hit — the engine's prefix cache (Mooncake-style
`hash_ids`, see `llmsim.serving.engine`) does the rest. A trace with its own `hash_ids` keeps them.
The prefix must be shorter than every prompt of the pool (fixed: the ISL; uniform:LO,HI: LO;
other distributions, `lengths_from` and traces: the shortest length drawn / in the trace, which
is what the simulations replay): a longer one would be a whole prompt served from cache, not a
shared system prompt, so it is an error rather than silently clipped per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import is_int
from ..errors import LlmsimError
from ..serving.workload import Workload, load_trace, make_workload

POOL = 4096
KV_BLOCK = 16


@dataclass
class PlanWorkload:
    input_len: np.ndarray
    output_len: np.ndarray
    hash_ids: list[np.ndarray] | None
    hash_block_tokens: int
    prefix_tokens: int  # tokens served from the prefix cache on a hit (0: none)
    description: str
    fixed: bool  # every request has the same lengths
    prefix_requested: int = 0  # the shared prefix as asked (benchmarks send exactly this many shared tokens)

    # ------------------------------------------------------------------ sizes
    @property
    def mean_isl(self) -> float:
        return float(self.input_len.mean())

    @property
    def mean_osl(self) -> float:
        return float(self.output_len.mean())

    @property
    def max_len(self) -> int:
        return int((self.input_len + self.output_len).max())

    def to_dict(self) -> dict:
        return {
            "description": self.description,
            "mean_input_tokens": self.mean_isl,
            "mean_output_tokens": self.mean_osl,
            "max_request_tokens": self.max_len,
            "shared_prefix_tokens": self.prefix_requested,
            "cached_prefix_tokens": self.prefix_tokens,
        }

    # ------------------------------------------------------------------ simulation workloads
    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray, list | None]:
        m = len(self.input_len)
        idx = np.arange(n) % m
        h = None if self.hash_ids is None else [self.hash_ids[i] for i in idx]
        return self.input_len[idx], self.output_len[idx], h

    def closed_loop(self, concurrency: int, num_requests: int, *, warmup: int | None = None, output_one: bool = False) -> Workload:
        """`concurrency` clients sending the first `num_requests` requests of the pool; the first
        `warmup` (default: `concurrency`) completions are left out of the metrics. `output_one`:
        every request generates one token (a prefill-only worker's view)."""
        inp, out, h = self._take(num_requests)
        if output_one:
            out = np.ones_like(out)
        w = concurrency if warmup is None else warmup
        w = min(w, num_requests - 1)
        return Workload(inp, out, None, concurrency=concurrency, hash_ids=h, hash_block_tokens=self.hash_block_tokens,
                        warmup=w, name=f"closed loop, {concurrency} clients, {num_requests} requests, {self.description}")

    def open_loop(self, rate: float, num_requests: int, seed: int, *, warmup: int = 0) -> Workload:
        from ..serving.workload import poisson_arrivals

        inp, out, h = self._take(num_requests)
        return Workload(inp, out, poisson_arrivals(rate, num_requests, seed), hash_ids=h, hash_block_tokens=self.hash_block_tokens,
                        warmup=warmup, name=f"Poisson {rate:g} req/s, {num_requests} requests, {self.description}")

    def percentile_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.input_len, self.output_len


def _prefix_ids(n: int, prefix: int, isl: np.ndarray) -> tuple[list[np.ndarray] | None, int, int]:
    block = (prefix // KV_BLOCK) * KV_BLOCK
    if block <= 0:
        return None, 512, 0
    shared = np.zeros(1, dtype=np.int64)
    return [shared] * n, block, block


def _shortest_input(inp: np.ndarray, input_dist, lengths_from) -> tuple[int, str]:
    """The shortest prompt the workload can hold: LO for uniform:LO,HI, else the shortest drawn."""
    from ..serving.workload import LengthDist, parse_length_dist

    shortest = int(inp.min())
    d = input_dist
    if isinstance(d, str) and d.strip().lower().startswith(("uniform:", "fixed:")):
        d = parse_length_dist(d)
    if isinstance(d, LengthDist) and d.kind in ("uniform", "fixed") and int(d.a) <= shortest:
        return int(d.a), f"{d} can draw {int(d.a)}-token prompts"
    if lengths_from is not None:
        return shortest, f"the shortest prompt resampled from {lengths_from} has {_tok(shortest)}"
    src = f"--input-dist {input_dist}" if input_dist is not None else "the input lengths"
    return shortest, f"the shortest of the {len(inp)} prompts drawn from {src} has {_tok(shortest)}"


def _tok(n: int) -> str:
    return f"{n} token" + ("" if n == 1 else "s")


def _check_prefix_fits(prefix: int, shortest: int, where: str, other: str) -> None:
    """Every prompt must be longer than the shared prefix: a prefix covering a whole prompt would
    make the request all cache hit (the engine clips it per request), not a shared system prompt."""
    if prefix >= shortest:
        fix = f"use --prefix < {shortest}, or {other}" if shortest > 1 else f"drop --prefix, or use {other}"
        raise LlmsimError(f"the shared prefix ({prefix} tokens) must be shorter than every input, but {where}",
                          hint=fix)


def build_workload(*, isl: int | None = None, osl: int | None = None, input_dist: str | None = None,
                   output_dist: str | None = None, lengths_from: str | None = None, trace: str | None = None,
                   prefix: int = 0, seed: int = 0, max_len: int | None = None) -> PlanWorkload:
    """The plan's request pool (see the module docstring)."""
    if prefix is None:
        prefix = 0
    if not is_int(prefix) or prefix < 0:
        raise LlmsimError(f"prefix must be a whole number of tokens >= 0, got {prefix!r}", hint="e.g. --prefix 500 (shared tokens per request); 0 for none")
    if trace is not None:
        if any(v is not None for v in (isl, osl, input_dist, output_dist, lengths_from)):
            raise LlmsimError("a trace brings its own lengths; drop --isl/--osl/--input-dist/--output-dist")
        w = load_trace(trace, max_len=max_len)
        inp, out = w.input_len, w.output_len
        if len(inp) > POOL:
            inp, out = inp[:POOL], out[:POOL]
        hids, block = (w.hash_ids[:len(inp)], w.hash_block_tokens) if w.hash_ids is not None else (None, 512)
        pref = 0
        if prefix and hids is not None:
            raise LlmsimError("the trace has its own prefix hash ids; drop --prefix")
        if prefix:
            _check_prefix_fits(int(prefix), int(inp.min()), f"the shortest prompt in {w.name or trace} has {_tok(int(inp.min()))}",
                               "a trace with longer prompts")
            hids, block, pref = _prefix_ids(len(inp), prefix, inp)
        fixed = bool(np.all(inp == inp[0]) and np.all(out == out[0]))
        desc = f"{len(inp)} requests from {w.name or trace}"
    else:
        if isl is None and input_dist is None and lengths_from is None:
            raise LlmsimError("no input lengths", hint="give --isl, --input-dist or a --trace")
        if osl is None and output_dist is None and lengths_from is None:
            raise LlmsimError("no output lengths", hint="give --osl, --output-dist or a --trace")
        fixed = lengths_from is None and input_dist is None and output_dist is None
        n = 1 if fixed else POOL
        w = make_workload(num_requests=n, isl=isl, osl=osl, input_dist=input_dist, output_dist=output_dist,
                          lengths_from=lengths_from, concurrency=1, seed=seed, max_len=max_len)
        inp, out = w.input_len, w.output_len
        if prefix and fixed and prefix >= int(inp[0]):
            raise LlmsimError(f"the shared prefix ({prefix} tokens) must be shorter than the input ({int(inp[0])} tokens)",
                              hint=f"use --prefix < {int(inp[0])}, or a longer --isl")
        if prefix and not fixed:
            shortest, where = _shortest_input(inp, input_dist, lengths_from)
            _check_prefix_fits(int(prefix), shortest, where, "input lengths that are all longer "
                               "(e.g. uniform:LO,HI with LO above the prefix, or a narrower normal / lognormal)")
        hids, block, pref = _prefix_ids(len(inp), prefix, inp)
        if fixed:
            desc = f"ISL {int(inp[0])}, OSL {int(out[0])}"
        else:
            desc = w.name.split(", ", 2)[-1].rsplit(", seed", 1)[0] if w.name else "sampled lengths"
    if prefix:
        desc += f", shared prefix {prefix} tokens ({pref} cached)"
    return PlanWorkload(np.ascontiguousarray(inp, dtype=np.int64), np.ascontiguousarray(out, dtype=np.int64), hids, block, pref, desc, fixed,
                        int(prefix) if pref else 0)
