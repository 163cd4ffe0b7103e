"""TrainLayout: how a training job is split across GPUs, and the divisibility rules.

Degrees (Megatron-LM / Megatron-Core conventions):

- ``tp``  tensor parallelism: attention heads, MLP width and vocabulary split ``tp`` ways.
          With ``sequence_parallel`` (Korthikanti et al. 2022) the norm / dropout / residual
          regions are split along the sequence instead of replicated.
- ``cp``  context parallelism (ring attention): every sequence split into ``cp`` chunks;
          K/V circulate around the ring, overlapped with attention.
- ``pp``  pipeline parallelism over layers; ``vpp`` virtual stages (interleaved 1F1B):
          each GPU holds ``vpp`` non-contiguous chunks of ``L/(pp*vpp)`` layers.
- ``dp``  data parallelism; with ``zero`` >= 1 optimizer state (1), gradients (2) and
          parameters (3) are sharded over the ``dp*cp`` GPUs that hold the same weights
          (Megatron's distributed optimizer shards over the DP x CP group).
- ``ep``  expert parallelism (MoE). Convention (Megatron-Core "MoE parallel folding"
          with expert tensor parallelism 1): the ``tp*cp*dp`` GPUs of a pipeline stage run
          the attention part as tp x cp x dp and the expert part as ``ep`` x ``edp``, with
          ``edp = tp*cp*dp/ep``. So ``ep`` must divide ``tp*cp*dp`` and the number of
          experts; each GPU holds ``num_experts/ep`` whole experts; expert gradients are
          reduced over the ``edp`` GPUs holding the same experts.

Placement (which link a group uses, `GPUSpec.link`): ranks are numbered TP innermost,
then CP, then DP, then PP (Megatron's default order tp-cp-ep-dp-pp). A group whose
members lie within ``span`` consecutive ranks uses ``link(span)``: TP spans ``tp``;
CP spans ``tp*cp``; DP spans ``tp*cp*dp``; PP spans all ``num_gpus`` GPUs; EP spans
``ep`` (experts folded innermost); the expert-DP group spans ``tp*cp*dp``.

The rules are written once on numpy arrays (`rule_violations`): the layout search uses
them as a mask over thousands of candidate layouts, `TrainLayout.validate` calls them on
one layout and raises the first broken rule as an LlmsimError with a fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from ..errors import LlmsimError
from ..models.spec import ModelSpec

RECOMPUTE = ("none", "selective", "full")


def recompute_code(name: str) -> int:
    key = str(name).strip().lower()
    if key not in RECOMPUTE:
        raise LlmsimError(f"recompute must be one of {', '.join(RECOMPUTE)}, got {name!r}",
                          hint="'selective' recomputes the attention core (Korthikanti et al. 2022), 'full' the whole layer")
    return RECOMPUTE.index(key)


@dataclass(frozen=True)
class TrainLayout:
    """One training layout. ``dp`` is derived from num_gpus when not given."""

    tp: int = 1
    pp: int = 1
    vpp: int = 1
    cp: int = 1
    ep: int = 1
    dp: int = 1
    zero: int = 1
    micro_batch: int = 1
    recompute: str = "none"

    def to_dict(self) -> dict:
        return asdict(self)


class LayoutArrays:
    """A batch of layouts as parallel int64 arrays (one entry per layout)."""

    FIELDS = ("tp", "pp", "vpp", "cp", "ep", "dp", "zero", "mb", "rc")
    # set by __init__ (one array per name in FIELDS, all of the same length)
    tp: npt.NDArray[np.int64]
    pp: npt.NDArray[np.int64]
    vpp: npt.NDArray[np.int64]
    cp: npt.NDArray[np.int64]
    ep: npt.NDArray[np.int64]
    dp: npt.NDArray[np.int64]
    zero: npt.NDArray[np.int64]
    mb: npt.NDArray[np.int64]
    rc: npt.NDArray[np.int64]

    def __init__(self, **kw):
        arrs = [np.atleast_1d(np.asarray(kw[f], dtype=np.int64)) for f in self.FIELDS]
        arrs = np.broadcast_arrays(*arrs)
        for f, a in zip(self.FIELDS, arrs):
            setattr(self, f, np.ascontiguousarray(a))

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    @classmethod
    def from_layout(cls, lay: TrainLayout) -> LayoutArrays:
        return cls(tp=lay.tp, pp=lay.pp, vpp=lay.vpp, cp=lay.cp, ep=lay.ep, dp=lay.dp, zero=lay.zero,
                   mb=lay.micro_batch, rc=recompute_code(lay.recompute))

    def take(self, idx) -> LayoutArrays:
        return LayoutArrays(**{f: getattr(self, f)[idx] for f in self.FIELDS})

    def layout(self, i: int) -> TrainLayout:
        return TrainLayout(tp=int(self.tp[i]), pp=int(self.pp[i]), vpp=int(self.vpp[i]), cp=int(self.cp[i]),
                           ep=int(self.ep[i]), dp=int(self.dp[i]), zero=int(self.zero[i]),
                           micro_batch=int(self.mb[i]), recompute=RECOMPUTE[int(self.rc[i])])


@dataclass(frozen=True)
class Rule:
    name: str
    broken: Callable  # (model, L, ctx) -> bool array, True where the rule is broken
    message: Callable  # (model, layout dict, ctx) -> (message, hint)


def _divisors(n: int, limit: int | None = None) -> list[int]:
    out = [d for d in range(1, n + 1) if n % d == 0]
    return [d for d in out if limit is None or d <= limit]


def _tp_ok_values(model: ModelSpec, cap: int = 64) -> list[int]:
    out = []
    for d in range(1, min(model.num_heads, cap) + 1):
        if model.num_heads % d:
            continue
        if not model.is_mla and model.num_kv_heads % d and d % model.num_kv_heads:
            continue
        if model.num_dense_layers and model.intermediate_size % d:
            continue
        out.append(d)
    return out


def _layers_broken(model, L, ctx):
    chunks = L.pp * L.vpp
    if ctx.get("uneven_layers"):
        return chunks > model.num_layers
    return (model.num_layers % chunks) != 0


def _layers_msg(model, lay, ctx):
    chunks = lay["pp"] * lay["vpp"]
    if ctx.get("uneven_layers"):
        return (f"pp*vpp = {chunks} exceeds the {model.num_layers} layers of {model.name}",
                "use fewer pipeline stages or virtual stages")
    ok = [d for d in _divisors(model.num_layers) if d <= 128]
    what = f"pp={lay['pp']}" if lay["vpp"] == 1 else f"pp*vpp = {lay['pp']}*{lay['vpp']} = {chunks}"
    return (f"{what} does not divide the {model.num_layers} layers of {model.name}",
            f"pp*vpp must be one of {ok}, or pass --uneven-layers (uneven_layers=True) to let the last chunks hold fewer layers")


def _microbatches(L, ctx):
    denom = L.mb * L.dp
    return np.where(denom > 0, ctx["global_batch"] // np.maximum(denom, 1), 0)


RULES: tuple[Rule, ...] = (
    Rule("positive",
         lambda m, L, c: (L.tp < 1) | (L.pp < 1) | (L.vpp < 1) | (L.cp < 1) | (L.ep < 1) | (L.dp < 1) | (L.mb < 1),
         lambda m, d, c: ("tp, pp, vpp, cp, ep, dp and micro_batch must all be positive integers, got "
                          + ", ".join(f"{k}={d[k]}" for k in ("tp", "pp", "vpp", "cp", "ep", "dp", "micro_batch")),
                          "use 1 for a dimension you do not split")),
    Rule("zero",
         lambda m, L, c: (L.zero < 0) | (L.zero > 3),
         lambda m, d, c: (f"zero must be 0, 1, 2 or 3, got {d['zero']}",
                          "0 = plain DP, 1 = optimizer states sharded, 2 = + gradients, 3 = + parameters (FSDP)")),
    Rule("num_gpus",
         lambda m, L, c: L.tp * L.pp * L.cp * L.dp != c["num_gpus"],
         lambda m, d, c: ((f"tp*pp*cp*dp = {d['tp']}*{d['pp']}*{d['cp']}*{d['dp']} = {d['tp'] * d['pp'] * d['cp'] * d['dp']} "
                          f"is not num_gpus = {c['num_gpus']}"),
                          "leave dp unset to derive it, or change the degrees so their product is the GPU count")),
    Rule("tp_heads",
         lambda m, L, c: (m.num_heads % L.tp) != 0,
         lambda m, d, c: (f"tp={d['tp']} does not divide the {m.num_heads} attention heads of {m.name}",
                          f"use tp in {_tp_ok_values(m)}")),
    Rule("tp_kv_heads",
         lambda m, L, c: np.zeros(len(L), bool) if m.is_mla else ((m.num_kv_heads % L.tp != 0) & (L.tp % m.num_kv_heads != 0)),
         lambda m, d, c: (f"tp={d['tp']} neither divides nor is a multiple of the {m.num_kv_heads} KV heads of {m.name}",
                          f"KV heads are split when tp divides them and replicated when tp is a multiple; use tp in {_tp_ok_values(m)}")),
    Rule("tp_ffn",
         lambda m, L, c: (m.intermediate_size % L.tp != 0) if m.num_dense_layers else np.zeros(len(L), bool),
         lambda m, d, c: (f"tp={d['tp']} does not divide the MLP width {m.intermediate_size} of {m.name}",
                          f"use tp in {_tp_ok_values(m)}")),
    Rule("pp_layers", _layers_broken, _layers_msg),
    Rule("vpp_needs_pp",
         lambda m, L, c: (L.vpp > 1) & (L.pp < 2),
         lambda m, d, c: (f"vpp={d['vpp']} (interleaved schedule) needs pp >= 2, got pp={d['pp']}", "use vpp=1 without pipeline parallelism")),
    Rule("global_batch",
         lambda m, L, c: (c["global_batch"] % np.maximum(L.mb * L.dp, 1)) != 0,
         lambda m, d, c: (f"global batch {c['global_batch']} is not divisible by micro_batch*dp = {d['micro_batch']}*{d['dp']} = {d['micro_batch'] * d['dp']}",
                          ("gradient accumulation runs global_batch/(micro_batch*dp) whole micro-batches per replica; "
                          "change global_batch, micro_batch or dp"))),
    Rule("interleave_microbatches",
         lambda m, L, c: (L.vpp > 1) & ((_microbatches(L, c) % np.maximum(L.pp, 1)) != 0),
         lambda m, d, c: ((f"the interleaved schedule needs the micro-batches per step "
                          f"({c['global_batch'] // max(d['micro_batch'] * d['dp'], 1)}) to be a multiple of pp={d['pp']}"),
                          "change global_batch or micro_batch, or use vpp=1")),
    Rule("cp_seq",
         lambda m, L, c: (c["seq_len"] % (L.cp * np.where((L.cp > 1) & c.get("cp_load_balance", True), 2, 1))) != 0,
         lambda m, d, c: (f"seq_len {c['seq_len']} is not divisible by "
                          + (f"2*cp = {2 * d['cp']} (load-balanced ring attention gives each rank two chunks)" if c.get("cp_load_balance", True) else f"cp = {d['cp']}"),
                          "choose cp so that seq_len splits evenly")),
    Rule("cp_flash",
         lambda m, L, c: (L.cp > 1) & (not c.get("flash_attention", True)),
         lambda m, d, c: (f"cp={d['cp']} (ring attention) needs flash_attention=True", "enable flash attention or use cp=1")),
    Rule("sp_seq",
         lambda m, L, c: (L.tp > 1) & bool(c.get("sequence_parallel", True)) & (((c["seq_len"] // L.cp) * L.mb) % L.tp != 0),
         lambda m, d, c: ((f"sequence parallelism splits the {c['seq_len'] // d['cp']} tokens of a micro-batch chunk "
                          f"(x micro_batch {d['micro_batch']}) over tp={d['tp']}, which does not divide them"),
                          "change seq_len or tp, or pass --no-sequence-parallel (sequence_parallel=False)")),
    Rule("ep_dense",
         lambda m, L, c: (L.ep != 1) if not m.is_moe else np.zeros(len(L), bool),
         lambda m, d, c: (f"ep={d['ep']} given but {m.name} is not a mixture-of-experts model", "use ep=1")),
    Rule("ep_experts",
         lambda m, L, c: ((m.num_experts % L.ep) != 0) if m.is_moe else np.zeros(len(L), bool),
         lambda m, d, c: (f"ep={d['ep']} does not divide the {m.num_experts} experts of {m.name}",
                          f"use ep in {_divisors(m.num_experts)}")),
    Rule("ep_fold",
         lambda m, L, c: (((L.tp * L.cp * L.dp) % L.ep) != 0) if m.is_moe else np.zeros(len(L), bool),
         lambda m, d, c: ((f"ep={d['ep']} must divide tp*cp*dp = {d['tp'] * d['cp'] * d['dp']} "
                          "(the GPUs of one pipeline stage, which the expert layers re-fold as ep x expert-DP)"),
                          "choose ep among the divisors of tp*cp*dp")),
    Rule("lora_zero",
         lambda m, L, c: (L.zero == 3) & (c.get("finetune") == "lora"),
         lambda m, d, c: ("zero=3 with LoRA is not modelled (frozen base weights are not sharded here)", "use zero <= 2 with LoRA")),
)


def rule_violations(model: ModelSpec, L: LayoutArrays, ctx: dict) -> np.ndarray:
    """Boolean matrix (rules x layouts): True where a layout breaks a rule."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([np.broadcast_to(np.asarray(r.broken(model, L, ctx), bool), (len(L),)) for r in RULES])


def valid_mask(model: ModelSpec, L: LayoutArrays, ctx: dict) -> np.ndarray:
    broken = rule_violations(model, L, ctx).any(axis=0)  # (rules, N) -> (N,): always an array
    return ~np.asarray(broken)


def check_layout(model: ModelSpec, lay: TrainLayout, ctx: dict) -> None:
    """Raise the first broken rule for one layout as an LlmsimError (message + how to fix it)."""
    for name in ("tp", "pp", "vpp", "cp", "ep", "dp", "zero", "micro_batch"):
        v = getattr(lay, name)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise LlmsimError(f"{name} must be an integer, got {v!r}")
    recompute_code(lay.recompute)
    L = LayoutArrays.from_layout(lay)
    bad = rule_violations(model, L, ctx)[:, 0]
    for rule, b in zip(RULES, bad):
        if b:
            msg, hint = rule.message(model, lay.to_dict(), ctx)
            raise LlmsimError(msg, hint=hint)
