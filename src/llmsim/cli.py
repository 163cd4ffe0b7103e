"""Command-line interface: `llmsim estimate`, `llmsim models ...`, `llmsim gpus ...`.

Every command takes `--json` for machine-readable output with unit-suffixed keys.
Bad input prints what is wrong and how to fix it, and exits with status 2.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, overload

import typer
from rich.console import Console
from rich.table import Table

from .checks import MAX_SETTING_S
from .errors import LlmsimError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Predict speed, memory and cost of LLMs on GPUs, and explain every number.")
models_app = typer.Typer(no_args_is_help=True, help="The built-in model catalog.")
gpus_app = typer.Typer(no_args_is_help=True, help="The built-in hardware catalog.")
validate_app = typer.Typer(no_args_is_help=True, help="Compare llmsim with real benchmark measurements.")
app.add_typer(models_app, name="models")
app.add_typer(gpus_app, name="gpus")
app.add_typer(validate_app, name="validate")

out = Console()
err = Console(stderr=True)
GIB = 1024**3
# `validate silicon`'s default benchmark protocol (InferenceMAX: 10 x concurrency requests, no warm-up);
# literals here so that `llmsim --help` does not import the simulator; tests check they equal
# llmsim.serving.validate.ROUNDS / WARMUP_ROUNDS
VALIDATE_ROUNDS, VALIDATE_WARMUP_ROUNDS = 10, 0
STREAMING_FROM = 1_000_000  # `serve` runs in streaming mode from this many requests unless per-request output is asked for


def _output_file(path: Optional[Path], what: str, inputs: tuple = (), suffixes: tuple[str, ...] = ()) -> None:
    """Refuse, before any work is done (not a traceback after it), an output path that is a
    directory, that is one of the command's `inputs` (it would be overwritten by the results), or
    whose suffix is not one of `suffixes` (when given: the formats written)."""
    if path is None:
        return
    p = path.expanduser()
    if p.is_dir():
        raise LlmsimError(f"{path} is a directory; {what} needs a file name", hint=f"e.g. {p / 'out.csv'}")
    if suffixes and p.suffix.lower() not in suffixes:
        raise LlmsimError(f"{what} is written as {' or '.join(s.lstrip('.').upper() for s in suffixes)}, but {path} ends in {p.suffix or 'no suffix'}",
                          hint=f"e.g. {p.with_suffix(suffixes[0])}")
    for src in inputs:
        if src is None:
            continue
        q = Path(str(src)).expanduser()
        if p.exists() and q.exists() and os.path.samefile(p, q):
            raise LlmsimError(f"{what} {path} is the input file {src}: writing the results would overwrite it",
                              hint="give the results another file name")


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=float) + "\n")


def _ms(x: float) -> str:
    return f"{x:,.2f} ms" if x < 1e4 else f"{x / 1e3:,.2f} s"


@app.command()
def estimate(
    model: str = typer.Option("meta-llama/Llama-3.1-70B", "--model", "-m", help="catalog id, HF id or path to a config.json"),
    gpu: str = typer.Option("h100-sxm", "--gpu", "-g", help="catalog id or path to a GPU YAML/JSON"),
    tp: int = typer.Option(1, help="tensor-parallel degree"),
    pp: int = typer.Option(1, help="pipeline-parallel degree"),
    dp: int = typer.Option(1, help="attention data-parallel degree (MoE with EP)"),
    ep: int = typer.Option(1, help="expert-parallel degree (MoE)"),
    batch: int = typer.Option(1, help="sequences processed together"),
    isl: int = typer.Option(1024, help="input (prompt) tokens per sequence"),
    osl: int = typer.Option(128, help="output tokens per sequence"),
    weight_dtype: Optional[str] = typer.Option(None, help="bf16 | fp8 | int8 | int4 | fp4 (default: the published checkpoint's fp8 / fp4 "
                                                          "where the GPU runs it, else bf16)"),
    act_dtype: Optional[str] = typer.Option(None, help="bf16 | fp8 (default: fp8 with fp8/fp4 weights)"),
    kv_dtype: Optional[str] = typer.Option(None, help="bf16 | fp8 | int8 | int4"),
    kernels: str = typer.Option("auto", help="'auto' (bundled engine tables when measured on this GPU), 'none' (roofline only), 'profile' (the bundled `llmsim profile` run of this GPU), or a directory of AIConfigurator-format kernel tables"),
    framework: Optional[str] = typer.Option(None, help="which measured GEMM table: trtllm | vllm"),
    memory_fraction: float = typer.Option(0.9, help="fraction of GPU memory the engine may use"),
    block_size: int = typer.Option(16, help="KV-cache block size in tokens"),
    price: Optional[float] = typer.Option(None, help="$/GPU-hour (default: the catalog's on-demand price)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    explain: bool = typer.Option(False, "--explain", help="per-operator table: time, FLOPs, bytes, bound, source"),
    ep_imbalance: Optional[str] = typer.Option(None, help="MoE with ep > 1: the busiest expert-parallel GPU's share of routed tokens over the mean share "
                                                     "(a number >= 1, or 'auto' from the routing skew; default balanced)"),
) -> None:
    """Prefill latency, TPOT, end-to-end latency, throughput and memory of a static batch."""
    from .estimate import estimate as run

    weight_dtype, wnote = _checkpoint_weight_dtype(model, [gpu], weight_dtype)
    r = run(
        model, gpu, tp=tp, pp=pp, dp=dp, ep=ep, batch=batch, isl=isl, osl=osl,
        weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype, kernels=kernels,
        framework=framework, memory_fraction=memory_fraction, block_size=block_size, price_per_hour_usd=price,
        ep_imbalance=_ep_imbalance_arg(ep_imbalance),
    )
    if as_json:
        _print_json(r.to_dict(explain=explain))
        return
    title = f"{r.model} on {r.num_gpus}× {r.gpu} (tp={r.tp} pp={r.pp} dp={r.dp} ep={r.ep}; w={r.weight_dtype} a={r.act_dtype} kv={r.kv_dtype})"
    t = Table(title=title, show_header=False)
    t.add_row("workload", f"batch {r.batch} × (isl {r.isl} + osl {r.osl})")
    t.add_row("prefill (TTFT)", _ms(r.prefill_ms))
    t.add_row("TPOT (mean decode step)", _ms(r.tpot_ms))
    t.add_row("end-to-end", _ms(r.e2e_ms))
    t.add_row("output throughput", f"{r.output_tokens_per_s:,.0f} tok/s ({r.output_tokens_per_s_per_gpu:,.0f} per GPU)")
    t.add_row("cost", f"${r.usd_per_million_output_tokens:,.2f} per million output tokens")
    mem = r.memory
    t.add_row("memory per GPU", f"weights {mem.weights_bytes / GIB:.1f} GiB, KV {mem.kv_cache_bytes / GIB:.1f} GiB, activations {mem.activation_bytes / GIB:.1f} GiB, runtime {mem.runtime_overhead_bytes / GIB:.1f} GiB = {mem.total_bytes / GIB:.1f} of {mem.usable_bytes / GIB:.1f} GiB usable")
    t.add_row("max concurrency", f"{r.max_concurrency} sequences of {r.isl + r.osl} tokens ({mem.max_kv_tokens:,} KV tokens)")
    t.add_row("kernel source", r.kernel_source)
    if r.ep_imbalance != 1.0:
        t.add_row("expert-parallel imbalance", f"{r.ep_imbalance:.3f}× the mean share on the busiest GPU")
    t.add_row("fits", "[green]yes[/]" if r.fits else f"[red]{r.message}[/]")
    if wnote:
        t.add_row("precision", wnote)
    out.print(t)
    if explain:
        for label, ops in (("prefill", r.prefill_ops), ("decode step (mid-generation context)", r.decode_ops)):
            et = Table(title=f"{label}: per-operator cost (per GPU)")
            for col in ("op", "layers", "×", "time/op", "total", "GFLOP", "MB", "bound", "eff", "source"):
                et.add_column(col, justify="right" if col not in ("op", "layers", "bound", "source") else "left")
            total = sum(c.total_s for c in ops) or 1.0
            for c in ops:
                o = c.op
                et.add_row(o.name, o.layer_group, str(o.count), f"{c.time_s * 1e6:,.1f} µs", f"{c.total_s * 1e3:,.3f} ms ({c.total_s / total:.0%})",
                           f"{o.flops / 1e9:,.2f}", f"{o.bytes / 1e6:,.2f}", c.bound, f"{c.efficiency:.0%}", c.source)
            out.print(et)


# make_workload's parameter names -> serve's flags, for its errors (they name the Python API)
_WORKLOAD_FLAGS = {"input_dist": "--input-dist", "output_dist": "--output-dist", "lengths_from": "--lengths-from",
                   "max_len": "--max-len", "num_requests": "--num-requests", "isl": "--isl", "osl": "--osl", "cv": "--cv",
                   "warmup": "--warmup", "time_scale": "--time-scale"}
# (a name already written as a flag, "--isl", is left alone)
_WORKLOAD_FLAG_RE = re.compile(r"(?<![-\w])(rate|concurrency|trace|seed)=('?)([^\s,']*)\2|(?<![-\w])(" + "|".join(_WORKLOAD_FLAGS)
                               + r")\b|(?<![-\w])(rate|concurrency|trace)(?= \((?:open loop|closed loop|replay)\)| must )")


def _renamed(e: LlmsimError, pattern: re.Pattern, repl: Callable[[re.Match], str]) -> LlmsimError:
    """The error with `pattern`'s matches in its message and hint replaced by `repl` (API names -> CLI flags)."""
    return LlmsimError(pattern.sub(repl, e.message), hint=None if e.hint is None else pattern.sub(repl, e.hint))


def _as_serve_flags(e: LlmsimError) -> LlmsimError:
    """The error with the workload API's parameter names written as `serve`'s flags
    ("rate=10" -> "--rate 10", "input_dist" -> "--input-dist")."""
    return _renamed(e, _WORKLOAD_FLAG_RE, lambda m: f"--{m[1]} {m[3]}" if m[1] else _WORKLOAD_FLAGS[m[4]] if m[4] else f"--{m[5]}")


# Deployment / SLO settings whose `serve` flag is their name with dashes (or, for the SLOs, named here)
_DEPLOYMENT_FLAG_RE = re.compile(r"(?<![-\w])(first_token_from|max_num_seqs|max_num_batched_tokens|memory_fraction|kv_reserve_output"
                                 r"|batch_wait_iters|batch_wait_tokens_ratio|adp_balance_timeout_iters|adp_balance_batching_iters"
                                 r"|ep_imbalance|moe_efficiency|block_size)\b|\bSLO (ttft|tpot)_ms\b|\b(disagg_handoff_s|prefill_layer_s|prefill_moe_layer_s|prefill_a2a_bw_bytes_s|attainment_target)\b")
_UNIT_FLAGS = {"disagg_handoff_s": "--handoff-ms", "prefill_a2a_bw_bytes_s": "--prefill-a2a-gbps", "prefill_layer_s": "--prefill-layer-us", "prefill_moe_layer_s": "--prefill-moe-layer-us",
               "attainment_target": "--slo-attainment"}


def _deployment_flags(e: LlmsimError) -> LlmsimError:
    """The error with the Deployment's setting names written as `serve`'s flags
    ("first_token_from" -> "--first-token-from", "SLO ttft_ms" -> "--ttft-slo (ms)")."""
    return _renamed(e, _DEPLOYMENT_FLAG_RE, lambda m: f"--{m[2]}-slo (ms)" if m[2] else _UNIT_FLAGS[m[3]] if m[3]
                    else "--" + m[1].replace("_", "-"))


def _gbps_opt(v: float | None, flag: str, example: str) -> float | None:
    """A CLI bandwidth option given in GB/s, as bytes/s; None stays None."""
    if v is None:
        return None
    if not (math.isfinite(v) and v >= 0):
        raise LlmsimError(f"{flag} must be a number of GB/s, at least 0, got {v:g}", hint=f"e.g. {flag} {example} (0: the collective model's bandwidth)")
    return v * 1e9


@overload
def _seconds_opt(v: float, flag: str, unit: str, example: str) -> float: ...
@overload
def _seconds_opt(v: float | None, flag: str, unit: str, example: str) -> float | None: ...
def _seconds_opt(v: float | None, flag: str, unit: str, example: str) -> float | None:
    """A CLI time option given in ms or µs (`unit`), as seconds; None stays None. Checked here so
    that an error names the flag and its unit (the API's own check names the setting in seconds)."""
    if v is None:
        return None
    scale = {"ms": 1e-3, "µs": 1e-6}[unit]
    if not (math.isfinite(v) and 0 <= v * scale <= MAX_SETTING_S):
        raise LlmsimError(f"{flag} must be a number of {unit}, at least 0 and at most an hour, got {v:g}", hint=f"e.g. {flag} {example}")
    return v * scale


def _checkpoint_weight_dtype(model: str, gpus: list[str], given: str | None) -> tuple[str, str | None]:
    """--weight-dtype, or by default the format of the model's published checkpoint where every
    GPU runs it on its tensor cores (DeepSeek-V3: fp8; gpt-oss: fp4 on Blackwell), else bf16.
    Returns the dtype and a note for the terminal (None when the user gave it or it is bf16)."""
    if given is not None:
        return given, None
    from .hardware import get_gpu
    from .models import get_model

    native = get_model(model).native_weight_dtype
    if native in ("fp8", "fp4") and all(get_gpu(g).supports(native) for g in gpus):
        return native, (f"weights: {native}, the format of {model}'s published checkpoint "
                        f"(--weight-dtype bf16 for 16-bit weights)")
    if native in ("fp8", "fp4"):
        return "bf16", (f"weights: bf16 -- {model}'s published checkpoint is {native}, which "
                        f"{', '.join(g for g in gpus if not get_gpu(g).supports(native))} cannot run on its tensor cores "
                        "(--weight-dtype to choose another format)")
    return "bf16", None


def _one(v: int | None) -> int:
    """A layout option left unset: 1."""
    return 1 if v is None else v


def _ep_imbalance_arg(v: str | None) -> float | str | None:
    """--ep-imbalance: 'auto', a number, or unset; anything else is a clear error (simulate checks the range)."""
    if v is None or v == "auto":
        return v
    try:
        return float(v)
    except ValueError:
        raise LlmsimError(f"--ep-imbalance must be 'auto' or a number >= 1, got {v!r}",
                          hint="e.g. --ep-imbalance 1.2, or --ep-imbalance auto to derive it from the routing skew") from None


def _spec_decoding_arg(method: str | None, k: int | None, accepted: float | None):
    """--spec-decoding / --num-draft-tokens / --accepted-per-step: all three, or none."""
    if method is None:
        if k is not None or accepted is not None:
            raise LlmsimError("--num-draft-tokens / --accepted-per-step need --spec-decoding",
                              hint="e.g. --spec-decoding mtp --num-draft-tokens 3 --accepted-per-step 1.9")
        return None
    if k is None or accepted is None:
        raise LlmsimError("--spec-decoding needs --num-draft-tokens and --accepted-per-step",
                          hint="the acceptance depends on the model, draft head and text, so llmsim assumes none: give the engine's "
                               "reported average acceptance length - 1, e.g. --num-draft-tokens 3 --accepted-per-step 1.9")
    from .serving.specdecode import SpecDecoding

    return SpecDecoding(method, k, accepted)


@app.command()
def serve(
    model: str = typer.Option("meta-llama/Llama-3.1-8B", "--model", "-m", help="catalog id, HF id or path to a config.json"),
    gpu: str = typer.Option("h100-sxm", "--gpu", "-g", help="catalog id or GPU YAML/JSON (aggregated pool)"),
    tp: Optional[int] = typer.Option(None, help="tensor parallel (default 1)"), pp: Optional[int] = typer.Option(None, help="pipeline parallel (default 1)"),
    dp: Optional[int] = typer.Option(None, help="attention data parallel (default 1)"), ep: Optional[int] = typer.Option(None, help="expert parallel (default 1)"),
    replicas: Optional[int] = typer.Option(None, help="engine replicas behind the router (default 1)"),
    backend: str = typer.Option("vllm", help="vllm | sglang | trtllm"),
    weight_dtype: Optional[str] = typer.Option(None, help="bf16 | fp8 | int8 | int4 | fp4 (default: the published checkpoint's fp8 / fp4 "
                                                          "where every pool's GPU runs it, else bf16)"),
    act_dtype: Optional[str] = typer.Option(None), kv_dtype: Optional[str] = typer.Option(None),
    concurrency: Optional[str] = typer.Option(None, help="closed loop: N clients (N = num-requests: offline max throughput); "
                                                         "several, comma-separated (1,4,16,64), sweep them: one simulation each"),
    rate: Optional[str] = typer.Option(None, help="open loop: arrivals per second; several, comma-separated (0.5,1,2), sweep them"),
    cv: Optional[float] = typer.Option(None, help="Gamma arrivals with this coefficient of variation (default Poisson)"),
    trace: Optional[Path] = typer.Option(None, help="replay a trace (Azure CSV, Mooncake JSONL, or llmsim CSV/JSONL)"),
    time_scale: float = typer.Option(1.0, "--time-scale", help="trace replay: multiply every inter-arrival time (0.5 = twice the request rate)"),
    isl: Optional[int] = typer.Option(None, help="fixed input tokens"), osl: Optional[int] = typer.Option(None, help="fixed output tokens"),
    input_dist: Optional[str] = typer.Option(None, help="fixed:N | uniform:A,B | normal:MEAN,STD | lognormal:MEAN,STD | trace:PATH"),
    output_dist: Optional[str] = typer.Option(None, help="as --input-dist"),
    lengths_from: Optional[Path] = typer.Option(None, help="resample (input, output) pairs from a trace"),
    max_len: Optional[int] = typer.Option(None, help="drop/clip requests longer than this many tokens"),
    num_requests: Optional[int] = typer.Option(None, help="requests to simulate"),
    warmup: int = typer.Option(0, help="completed requests excluded from metrics"),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="closed loop: requests per client instead of --num-requests (R x concurrency "
                                         "requests at each level; 10 = InferenceMAX's --num-prompts CONC*10)"),
    warmup_rounds: Optional[int] = typer.Option(None, "--warmup-rounds", help="closed loop: warm-up per client instead of --warmup "
                                                "(the first W x concurrency completions are excluded)"),
    client_jitter_ms: float = typer.Option(0.0, "--client-jitter-ms", help="closed loop: each request is sent a uniform random 0..X ms after its client is free (client/network turnaround; `validate silicon` uses 5)"),
    max_num_seqs: Optional[int] = typer.Option(None), max_num_batched_tokens: Optional[int] = typer.Option(None),
    chunked_prefill: Optional[bool] = typer.Option(None, "--chunked-prefill/--no-chunked-prefill"),
    mixed_batches: Optional[bool] = typer.Option(None, "--mixed-batches/--no-mixed-batches",
                                                 help="decodes share iterations with prefill chunks (default: the backend's; vllm/trtllm yes, sglang no)"),
    allreduce_norm_fusion: Optional[bool] = typer.Option(
        None, "--allreduce-norm-fusion/--no-allreduce-norm-fusion",
        help="tensor-parallel all-reduce and the RMSNorm after it as one kernel (default: as the backend does; trtllm yes, sglang for DeepSeek-V3 / gpt-oss on one Blackwell node, vllm no)"),
    overlap_scheduling: Optional[bool] = typer.Option(
        None, "--overlap-scheduling/--no-overlap-scheduling",
        help="the engine schedules the next iteration while one runs, so a new request waits one iteration more (default: as the backend does; sglang yes)"),
    static_batching: bool = typer.Option(False, help="baseline: admit a new batch only when the previous one is done"),
    batch_wait_iters: int = typer.Option(0, help="hold new prefill work back for up to N iterations while decodes run (TRT-LLM batch_wait_timeout_iters; 0 = off)"),
    batch_wait_tokens_ratio: float = typer.Option(0.0, help="with --batch-wait-iters: held work runs once prompts + decodes reach this share of the token budget "
                                                  "(TRT-LLM batch_wait_max_tokens_ratio)"),
    adp_balance_timeout_iters: int = typer.Option(0, help="attention DP: prompts wait until every DP rank has one, or for up to N iterations "
                                                  "(TRT-LLM attention_dp_config enable_balance + timeout_iters, 50 when enabled; 0 = off)"),
    adp_balance_batching_iters: int = typer.Option(0, help="with --adp-balance-timeout-iters: extra iterations once every DP rank has a prompt "
                                                   "(TRT-LLM batching_wait_iters, 10 when enabled)"),
    scheduler_recv_interval: int = typer.Option(1, help="while only decodes run, new requests reach the scheduler every N decode iterations "
                                                "(SGLang --scheduler-recv-interval; 1 = every iteration)"),
    preemption: str = typer.Option("recompute", help="recompute | swap"),
    spec_decoding: Optional[str] = typer.Option(None, "--spec-decoding", help="speculative decoding with a one-layer draft head: mtp (the "
                                                "model's own multi-token-prediction module) | eagle; needs --num-draft-tokens and --accepted-per-step"),
    num_draft_tokens: Optional[int] = typer.Option(None, "--num-draft-tokens", help="with --spec-decoding: drafts per step (SGLang "
                                                   "--speculative-num-steps, TRT-LLM num_nextn_predict_layers, vLLM num_speculative_tokens)"),
    accepted_per_step: Optional[float] = typer.Option(None, "--accepted-per-step", help="with --spec-decoding: mean accepted drafts per step, "
                                                      "0..num-draft-tokens (the engine's reported average acceptance length - 1; no default: "
                                                      "it depends on the model, draft head and text)"),
    memory_fraction: Optional[float] = typer.Option(None, help="fraction of GPU memory the engine may use for weights, activations and KV "
                                                    "cache, in (0, 1] (vLLM --gpu-memory-utilization, SGLang --mem-fraction-static; default: the backend's)"),
    prefix_caching: bool = typer.Option(True, "--prefix-caching/--no-prefix-caching"),
    block_size: int = typer.Option(16), router: str = typer.Option("least_outstanding", help="round_robin | least_outstanding | prefix"),
    prefill_gpu: Optional[str] = typer.Option(None, help="disaggregated: prefill pool GPU (default --gpu); any --prefill-* / --decode-* option makes the deployment disaggregated"),
    prefill_tp: Optional[int] = typer.Option(None, help="disaggregated: prefill worker layout (default 1)"), prefill_pp: Optional[int] = typer.Option(None),
    prefill_dp: Optional[int] = typer.Option(None), prefill_ep: Optional[int] = typer.Option(None),
    prefill_workers: Optional[int] = typer.Option(None, help="disaggregated: prefill workers (default 1)"),
    prefill_max_num_batched_tokens: Optional[int] = typer.Option(None, min=1, help="disaggregated: the prefill workers' own token budget per "
                                                                 "iteration (SGLang: --chunked-prefill-size; default --max-num-batched-tokens, else the backend's)"),
    prefill_max_num_seqs: Optional[int] = typer.Option(None, min=1, help="disaggregated: the prefill workers' own cap on running requests "
                                                       "(TRT-LLM context server max_batch_size x attention DP; default --max-num-seqs, else the backend's)"),
    decode_gpu: Optional[str] = typer.Option(None, help="disaggregated: decode pool GPU (default --gpu)"),
    decode_tp: Optional[int] = typer.Option(None, help="disaggregated: decode worker layout (default 1)"), decode_pp: Optional[int] = typer.Option(None),
    decode_dp: Optional[int] = typer.Option(None), decode_ep: Optional[int] = typer.Option(None),
    decode_workers: Optional[int] = typer.Option(None, help="disaggregated: decode workers (default 1)"),
    decode_max_num_batched_tokens: Optional[int] = typer.Option(None, min=1, help="disaggregated: the decode workers' own token budget per "
                                                                "iteration (default --max-num-batched-tokens, else the backend's)"),
    decode_max_num_seqs: Optional[int] = typer.Option(None, min=1, help="disaggregated: the decode workers' own cap on running requests; "
                                                      "requests beyond it wait at the decode worker for a slot (default --max-num-seqs, else the backend's)"),
    first_token_from: Optional[str] = typer.Option(None, help="disaggregated: prefill | decode, which worker's token the client sees first (default: the backend's front end; trtllm prefill, vllm/sglang decode)"),
    handoff_ms: Optional[float] = typer.Option(None, "--handoff-ms", help="disaggregated: fixed time per prefill -> decode hand-off beyond the KV transfer "
                                               "(front-end round trips, handshake, polling), in ms (default: the backend's fitted Backend.disagg_handoff_s)"),
    ttft_slo_ms: Optional[float] = typer.Option(None, "--ttft-slo", help="TTFT target (ms) for goodput / SLO attainment"),
    tpot_slo_ms: Optional[float] = typer.Option(None, "--tpot-slo", help="TPOT target (ms)"),
    slo_attainment: Optional[float] = typer.Option(None, "--slo-attainment", help="sweeps: the share of requests that must meet the SLOs "
                                                   "for a level to count as meeting them, in (0, 1] (default 0.9)"),
    kernels: str = typer.Option("auto", help="auto | none | profile | DIR of kernel tables"),
    cpu_overhead_ms: Optional[float] = typer.Option(None, help="override the backend's per-iteration CPU overhead"),
    frontend_us_per_token: Optional[float] = typer.Option(None, help="override the backend's serial front-end (API server) time per prompt token, in µs"),
    prefill_layer_us: Optional[float] = typer.Option(None, help="override the backend's fixed time per model layer of an iteration that runs "
                                                     "prefill, in µs (0: off; by default only on the Blackwell GPUs it was fitted on; given, on any GPU "
                                                     "but never where measured kernel tables time it)"),
    prefill_moe_layer_us: Optional[float] = typer.Option(None, help="override the backend's fixed time per MoE layer of an iteration that runs "
                                                         "prefill, in µs (0: off; MoE models only; by default only on the Blackwell GPUs it was fitted on; given, on "
                                                         "any GPU but never where measured kernel tables time it)"),
    prefill_a2a_gbps: Optional[float] = typer.Option(None, "--prefill-a2a-gbps", help="override the backend's bandwidth (GB/s per GPU) of the MoE "
                                                     "all-to-alls in attention-DP + EP iterations that run prefill (SGLang: its DeepEP "
                                                     "normal-mode kernels; 0: the collective model's)"),
    moe_efficiency: Optional[float] = typer.Option(None, help="override the backend's fraction of the dense GEMM's compute rate that its fused-MoE "
                                                   "expert GEMMs reach, in (0, 1] (MoE models only)"),
    kv_reserve_output: Optional[float] = typer.Option(None, help="share of each running request's remaining output KV that admission keeps back "
                                                      "(0: admit optimistically and preempt, as vLLM; 1: never evict, as TRT-LLM; default: the backend's)"),
    ep_imbalance: Optional[str] = typer.Option(None, help="expert-parallel load imbalance of MoE layers with ep > 1: the busiest GPU's share of "
                                               "routed tokens over the mean share (a number >= 1; 'auto': from the routing skew, without EPLB; default: balanced)"),
    price: Optional[float] = typer.Option(None, help="$/GPU-hour"),
    seed: int = typer.Option(0, help="seed of the workload and of the simulator's own random choices"), output: Optional[Path] = typer.Option(None, "--output", "-o", help="per-request CSV or Parquet"),
    streaming: Optional[bool] = typer.Option(None, "--streaming/--exact", help="metrics in bounded memory, percentiles from histograms within 0.5% "
                                             f"(default: streaming from {STREAMING_FROM:,} requests unless -o is given), or exact percentiles and per-request state"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Simulate serving a request stream: TTFT, TPOT, ITL, E2E, throughput, goodput, KV use, cost."""
    from .serving.metrics import SLO, write_per_request
    from .serving.simulate import Deployment, Pool, check_unused_settings, simulate
    from .serving.sweep import parse_loads
    from .serving.workload import length_dist_trace_path, make_workload

    dist_traces = (length_dist_trace_path(input_dist), length_dist_trace_path(output_dist))
    _output_file(output, "-o/--output (per-request results)", inputs=(trace, lengths_from, *dist_traces),
                 suffixes=(".csv", ".parquet", ".pq"))
    if streaming and output is not None:
        raise LlmsimError("--streaming keeps no per-request state, so it cannot write per-request results (-o/--output)",
                          hint="drop --streaming (exact mode) to write per-request results, or drop -o")
    _check_rounds(rounds, warmup_rounds, concurrency, num_requests, warmup)
    if num_requests is None and trace is None and rounds is None:
        num_requests = 1000
    if isl is None and osl is None and input_dist is None and output_dist is None and lengths_from is None and trace is None:
        isl, osl = 1024, 128
    jitter_s = _seconds_opt(client_jitter_ms, "--client-jitter-ms", "ms", "5")
    levels = {by: parse_loads(v, by) for by, v in (("concurrency", concurrency), ("rate", rate)) if v is not None}
    swept = [by for by, v in levels.items() if len(v) > 1]
    if len(swept) > 1:
        raise LlmsimError("--concurrency and --rate both list several levels", hint="sweep one of them (and give only one: closed or open loop)")
    by = swept[0] if swept else None
    if slo_attainment is not None and by is None:
        raise LlmsimError("--slo-attainment applies to a sweep (several --concurrency or --rate levels)",
                          hint="e.g. --concurrency 1,4,16,64 --ttft-slo 500 --tpot-slo 50 --slo-attainment 0.9")

    def workload_at(conc: int | None, r: float | None):
        n, w = num_requests, warmup
        if rounds is not None or warmup_rounds is not None:
            assert conc is not None  # --rounds / --warmup-rounds are closed-loop only (_check_rounds)
            if rounds is not None:
                n = rounds * conc
            if warmup_rounds is not None:
                w = warmup_rounds * conc
        try:
            return make_workload(num_requests=n, isl=isl, osl=osl, input_dist=input_dist, output_dist=output_dist,
                                 lengths_from=str(lengths_from) if lengths_from else None, rate=r, cv=cv, concurrency=conc,
                                 trace=str(trace) if trace else None, seed=seed, warmup=w, max_len=max_len, client_jitter_s=jitter_s,
                                 time_scale=time_scale)
        except LlmsimError as e:
            e = _as_serve_flags(e)
            where = [f"at {'--concurrency ' + str(conc) if conc is not None else f'--rate {r:g}'}"] if by is not None else []
            if rounds is not None or warmup_rounds is not None:
                where.append(f"--rounds / --warmup-rounds make {n} requests, {w} of them warm-up")
            raise (LlmsimError(f"{e.message} ({'; '.join(where)})", hint=e.hint) if where else e) from None

    first = {k: v[0] for k, v in levels.items()}  # a sweep: its lowest level, checked before anything runs
    wl = workload_at(_concurrency_level(first.get("concurrency")), first.get("rate"))
    # a prefill / decode pool option names a disaggregated deployment (the pools' GPU defaults to --gpu);
    # ignoring it and simulating one aggregated replica would be a silent wrong answer
    pool_opts = (prefill_tp, prefill_pp, prefill_dp, prefill_ep, prefill_workers, decode_tp, decode_pp, decode_dp, decode_ep, decode_workers)
    disagg = (prefill_gpu is not None or decode_gpu is not None or any(v is not None for v in pool_opts)
              or any(v is not None for v in (prefill_max_num_batched_tokens, decode_max_num_batched_tokens, prefill_max_num_seqs,
                                             decode_max_num_seqs)))
    if disagg and any(v is not None for v in (tp, pp, dp, ep, replicas)):
        raise LlmsimError("--tp / --pp / --dp / --ep / --replicas lay out an aggregated replica, but the --prefill-* / --decode-* "
                          "options make this deployment disaggregated",
                          hint="give each pool's layout with --prefill-tp ... --decode-workers (their GPU defaults to --gpu)")
    weight_dtype, wnote = _checkpoint_weight_dtype(model, [prefill_gpu or gpu, decode_gpu or gpu] if disagg else [gpu], weight_dtype)
    dep = Deployment(
        model=model, pool=Pool() if disagg else Pool(gpu, *(_one(v) for v in (tp, pp, dp, ep, replicas))),
        prefill=replace(Pool(prefill_gpu or gpu, *(_one(v) for v in pool_opts[:5])), max_num_batched_tokens=prefill_max_num_batched_tokens,
                        max_num_seqs=prefill_max_num_seqs) if disagg else None,
        decode=replace(Pool(decode_gpu or gpu, *(_one(v) for v in pool_opts[5:])), max_num_batched_tokens=decode_max_num_batched_tokens,
                       max_num_seqs=decode_max_num_seqs) if disagg else None,
        backend=backend, weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens, chunked_prefill=chunked_prefill, mixed_batches=mixed_batches, allreduce_norm_fusion=allreduce_norm_fusion,
        overlap_scheduling=overlap_scheduling, static_batching=static_batching,
        block_size=block_size, preemption=preemption, prefix_caching=prefix_caching, router=router.replace("-", "_"), kernels=kernels,
        memory_fraction=memory_fraction, cpu_overhead_s=_seconds_opt(cpu_overhead_ms, "--cpu-overhead-ms", "ms", "0.5"), price_per_hour_usd=price,
        first_token_from=first_token_from, disagg_handoff_s=_seconds_opt(handoff_ms, "--handoff-ms", "ms", "150"),
        frontend_s_per_token=_seconds_opt(frontend_us_per_token, "--frontend-us-per-token", "µs", "1"),
        prefill_layer_s=_seconds_opt(prefill_layer_us, "--prefill-layer-us", "µs", "500"), moe_efficiency=moe_efficiency,
        prefill_a2a_bw_bytes_s=_gbps_opt(prefill_a2a_gbps, "--prefill-a2a-gbps", "300"),
        prefill_moe_layer_s=_seconds_opt(prefill_moe_layer_us, "--prefill-moe-layer-us", "µs", "750"),
        kv_reserve_output=kv_reserve_output, batch_wait_iters=batch_wait_iters, batch_wait_tokens_ratio=batch_wait_tokens_ratio,
        recv_interval_iters=scheduler_recv_interval, adp_balance_timeout_iters=adp_balance_timeout_iters,
        adp_balance_batching_iters=adp_balance_batching_iters, ep_imbalance=_ep_imbalance_arg(ep_imbalance), seed=seed,
        spec_decoding=_spec_decoding_arg(spec_decoding, num_draft_tokens, accepted_per_step),
    )
    try:
        check_unused_settings(dep, wl)
        slo = SLO(ttft_slo_ms, tpot_slo_ms) if (ttft_slo_ms is not None or tpot_slo_ms is not None) else None
        if by is not None:
            _serve_sweep(dep, by, levels[by], lambda v: workload_at(_concurrency_level(v if by == "concurrency" else first.get("concurrency")),
                                                                     v if by == "rate" else first.get("rate")),
                         slo, slo_attainment, output, streaming, as_json, title=f"{model} — {backend}, {_layout(dep)}")
            return
        if streaming is None:
            streaming = output is None and len(wl) >= STREAMING_FROM
        show_progress = not as_json and len(wl) >= 20_000
        if show_progress:
            from rich.progress import Progress

            with Progress(console=err, transient=True) as prog:
                task = prog.add_task("simulating", total=len(wl))
                res = simulate(dep, wl, slo=slo, progress=lambda done, total: prog.update(task, completed=done), streaming=streaming)
        else:
            res = simulate(dep, wl, slo=slo, streaming=streaming)
    except LlmsimError as e:
        raise _deployment_flags(e) from None
    if output is not None:
        write_per_request(res.per_request(), output)
    s = res.summary
    if as_json:
        _print_json(s)
        return

    t = Table(title=f"{model} — {backend}, {_layout(dep)}; {wl.name or ''}")
    for c in ("metric", "mean", "p50", "p90", "p99"):
        t.add_column(c, justify="left" if c == "metric" else "right")
    for key, label in (("ttft_ms", "TTFT (ms)"), ("tpot_ms", "TPOT (ms)"), ("itl_ms", "ITL (ms)"), ("e2e_ms", "E2E (ms)"), ("queue_ms", "queueing (ms)")):
        d = s.get(key) or {}
        t.add_row(label, *(f"{d[q]:,.2f}" if d.get(q) is not None else "-" for q in ("mean", "p50", "p90", "p99")))
    out.print(t)
    g = Table(show_header=False)
    g.add_row("requests", f"{s['num_requests']} counted ({s['num_completed']} completed) over {s['duration_s']:,.1f} s simulated")
    if s["output_tokens_per_s"] is None:  # a counted window of zero length: rates are undefined
        g.add_row("throughput", "- (the counted requests all finished in one instant; count more requests or lower --warmup)")
    else:
        g.add_row("throughput", f"{s['output_tokens_per_s']:,.0f} output tok/s ({s['output_tokens_per_s_per_gpu']:,.0f}/GPU), "
                                f"{s['total_tokens_per_s']:,.0f} total tok/s, {s['requests_per_s']:,.2f} req/s")
    if "goodput_requests_per_s" in s:
        gp = "-" if s["goodput_requests_per_s"] is None else f"{s['goodput_requests_per_s']:,.2f} req/s"
        att = "-" if s["slo_attainment"] is None else f"{s['slo_attainment']:.1%}"
        g.add_row("goodput", f"{gp} meeting SLOs ({att} attainment)")
    fr = s.get("closed_loop_first_round")
    if fr:
        g.add_row("start-up burst", f"first round ({fr['requests']} requests sent together): TTFT mean {fr['ttft_ms_mean']:,.1f} ms, "
                  f"later requests {fr['later_ttft_ms_mean']:,.1f} ms; {fr['share_of_ttft_mean']:.0%} of the TTFT mean")
    g.add_row("KV cache", f"mean {s['kv_cache_utilisation_mean']:.0%}, max {s['kv_cache_utilisation_max']:.0%} used; {s['preemptions']} preemptions; prefix-cache hit rate {s['prefix_cache_hit_rate']:.1%}")
    ho = s.get("kv_handoff")
    if ho and ho["handoffs"]:
        over = "NVLink" if ho["link"] == "nvlink" else "the NICs"
        g.add_row("KV hand-offs", f"{ho['handoffs']:,} over {over}: transfer mean {ho['transfer_ms']['mean']:,.2f} ms (max "
                  f"{ho['transfer_ms']['max']:,.2f}), of which waiting for busy links {ho['link_wait_ms']['mean']:,.2f} ms "
                  f"(max {ho['link_wait_ms']['max']:,.2f}); then {ho['fixed_ms']:,.0f} ms fixed hand-off each")
    parts = s.get("ttft_parts_ms")
    if parts and parts["requests"]:
        head = f"queueing {parts['queue']:,.2f} + prefill {parts['prefill']:,.2f}"
        if "decode_first" in parts:
            g.add_row("TTFT parts", f"mean of {parts['requests']:,} handed-off requests: {head} + KV hand-off {parts['kv_handoff']:,.2f} "
                      f"(waiting for links {parts['kv_link_wait']:,.2f}) + fixed hand-off {parts['handoff_fixed']:,.2f} + decode slot "
                      f"and first step {parts['decode_first']:,.2f} = {parts['ttft']:,.2f} ms")
        else:
            g.add_row("TTFT parts", f"mean of {parts['requests']:,} handed-off requests: {head} = {parts['ttft']:,.2f} ms (the prefill "
                      f"worker's token comes first; the KV hand-off, {parts['kv_handoff']:,.2f} ms, precedes the second token)")
    if s.get("energy_j_per_output_token") is not None:
        g.add_row("energy / cost", f"{s['energy_j_per_output_token']:.2f} J per output token; ${s['usd_per_million_output_tokens']:,.2f} per million output tokens")
    slow = [c for c in s.get("collective_links", []) if c["link"] != "nvlink"]
    if slow:  # the collectives that leave the NVLink domain, which the numbers above pay for
        g.add_row("links", "; ".join(f"{c['pool']} {c['group']}={c['gpus']} {'all-reduces' if c['group'] == 'tp' else 'all-to-alls'} "
                                     f"over {'the scale-out network' if c['link'] == 'network' else 'PCIe'} ({c['bandwidth_gbps']:,.0f} GB/s per GPU)"
                                     for c in slow))
    if wnote:
        g.add_row("precision", wnote)
    mode = "streaming metrics, percentiles within 0.5%" if streaming else "exact metrics"
    g.add_row("simulation", f"{s['num_iterations']:,} engine iterations in {s['simulation_wall_s']:.2f} s wall ({mode}; {s['simulator_build']} build)")
    out.print(g)


def _concurrency_level(v: float | None) -> int | None:
    """A --concurrency level from `parse_loads` (an int; its return type also covers --rate's floats)."""
    assert v is None or isinstance(v, int)
    return v


def _check_rounds(rounds: int | None, warmup_rounds: int | None, concurrency: str | None, num_requests: int | None, warmup: int) -> None:
    """`serve --rounds R --warmup-rounds W`: the request count and warm-up per client of a closed loop."""
    if rounds is None and warmup_rounds is None:
        return
    if concurrency is None:
        raise LlmsimError("--rounds / --warmup-rounds count requests per client, so they need a closed loop (--concurrency)",
                          hint="with --rate or --trace give --num-requests and --warmup instead")
    if rounds is not None and num_requests is not None:
        raise LlmsimError("give --num-requests or --rounds, not both", hint="--rounds R simulates R x concurrency requests at each level")
    if warmup_rounds is not None and warmup != 0:
        raise LlmsimError("give --warmup or --warmup-rounds, not both", hint="--warmup-rounds W excludes the first W x concurrency completions")
    if rounds is not None and rounds < 1:
        raise LlmsimError(f"--rounds must be >= 1, got {rounds}", hint="requests per client, e.g. --rounds 10")
    if warmup_rounds is not None and (warmup_rounds < 0 or (rounds is not None and warmup_rounds >= rounds)):
        bound = f"in [0, {rounds}) (below --rounds)" if rounds is not None else ">= 0"
        raise LlmsimError(f"--warmup-rounds must be {bound}, got {warmup_rounds}",
                          hint="e.g. --rounds 10 --warmup-rounds 2: 10 requests per client, the first 2 per client not counted")


def _layout(dep) -> str:
    """Every pool's full layout (dp / ep matter as much as tp), the GPU as resolved ('h100' -> h100-sxm)."""
    from .hardware import get_gpu

    def lay(p) -> str:
        return f"{p.workers}x (tp={p.tp} pp={p.pp} dp={p.dp} ep={p.ep}) on {get_gpu(p.gpu).name if isinstance(p.gpu, str) else p.gpu.name}"

    return f"prefill {lay(dep.prefill)} + decode {lay(dep.decode)}" if dep.prefill is not None else lay(dep.pool)


def _serve_sweep(dep, by: str, loads: list, workload_at: Callable, slo, attainment: float | None, output: Optional[Path],
                 streaming: Optional[bool], as_json: bool, title: str) -> None:
    """`serve` with several --concurrency / --rate levels: one simulation per level, a row each."""
    from .serving.metrics import write_per_request
    from .serving.sweep import DEFAULT_ATTAINMENT_TARGET, sweep

    if attainment is not None and slo is None:
        raise LlmsimError("--slo-attainment needs a latency target", hint="add --ttft-slo MS and/or --tpot-slo MS")
    wls = {v: workload_at(v) for v in loads}  # every level's workload is checked before the first simulation
    stream = (output is None and max(len(w) for w in wls.values()) >= STREAMING_FROM) if streaming is None else streaming
    target = DEFAULT_ATTAINMENT_TARGET if attainment is None else attainment
    if as_json:
        res = sweep(dep, by, loads, wls.__getitem__, slo=slo, attainment_target=target, streaming=stream)
    else:
        from rich.progress import Progress

        with Progress(console=err, transient=True) as prog:
            task = prog.add_task(f"sweeping {by}", total=len(loads))
            res = sweep(dep, by, loads, wls.__getitem__, slo=slo, attainment_target=target, streaming=stream,
                        progress=lambda done, total: prog.update(task, completed=done))
    if output is not None:
        write_per_request(res.per_request(), output)
    if as_json:
        _print_json(res.summary())
        return
    level = "clients" if by == "concurrency" else "rate"
    from rich import box

    t = Table(title=f"{title}; {by} sweep, {len(loads)} levels", box=box.SIMPLE_HEAD, pad_edge=False)
    cols = [level, "req/s", "tok/s", "per GPU", "TTFT", "p90", "TPOT", "p90"] + (["goodput", "SLO"] if slo is not None else [])
    for c in cols:
        t.add_column(c, justify="right")

    def ms(v) -> str:  # latencies to about three figures
        return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"

    def rate(v, spec: str = ",.0f") -> str:
        return "-" if v is None else format(v, spec)

    for p in res.points:
        s = p.result.summary
        lat = [ms((s.get(k) or {}).get(q)) for k in ("ttft_ms", "tpot_ms") for q in ("mean", "p90")]
        row = [f"{p.load:g}", rate(s["requests_per_s"], ",.2f"), rate(s["output_tokens_per_s"]), rate(s["output_tokens_per_s_per_gpu"]), *lat]
        if slo is not None:
            row += [rate(s.get("goodput_requests_per_s"), ",.2f"), rate(s.get("slo_attainment"), ".0%")]
        t.add_row(*row)
    out.print(t)
    notes = [f"{level}{' (requests/s offered)' if by == 'rate' else ''}; req/s and tok/s (output tokens, and per GPU) as served; TTFT and TPOT: mean "
             "and p90 in ms" + ("; goodput: req/s meeting the SLOs, SLO: their share" if slo is not None else "")
             + ". Each row is `llmsim serve` at that level alone (same deployment, lengths and seed); --json gives every metric per level"]
    if slo is not None:
        best = res.max_load_meeting_slo()
        goal = " and ".join(x for x in (slo.ttft_ms is not None and f"TTFT <= {slo.ttft_ms:g} ms",
                                         slo.tpot_ms is not None and f"TPOT <= {slo.tpot_ms:g} ms") if x)
        notes.append(f"highest level with >= {target:.0%} of requests meeting {goal}: "
                     + (f"{best:g} {level}" if best is not None else "none of those simulated"))
    notes.append(f"simulated in {res.wall_s:.2f} s wall")
    for n in notes:
        out.print(n)


@app.command()
def train(
    model: str = typer.Option("gpt3-175b", "--model", "-m", help="catalog id, HF id or path to a config.json"),
    gpu: str = typer.Option("h100-sxm", "--gpu", "-g"),
    num_gpus: Optional[int] = typer.Option(None, help="total GPUs (dp is derived)"),
    tp: Optional[int] = typer.Option(None, help="tensor parallel (default 1; --search chooses it)"),
    pp: Optional[int] = typer.Option(None, help="pipeline parallel (default 1; --search chooses it)"),
    vpp: Optional[int] = typer.Option(None, help="virtual stages per pipeline rank, interleaved 1F1B (default 1; --search chooses it)"),
    cp: Optional[int] = typer.Option(None, help="context parallel, ring attention (default 1; --search chooses it)"),
    ep: Optional[int] = typer.Option(None, help="expert parallel, MoE (default 1; with --search: only this ep)"),
    dp: Optional[int] = typer.Option(None, help="data parallel (default: num_gpus / (tp·pp·cp); --search chooses it)"),
    zero: Optional[int] = typer.Option(None, help="ZeRO / FSDP stage 0-3 (default 1; with --search: only this stage)"),
    micro_batch: Optional[int] = typer.Option(None, help="sequences per micro-batch (default 1; with --search: only this size)"),
    global_batch: Optional[int] = typer.Option(None, help="sequences per optimizer step"),
    seq_len: Optional[int] = typer.Option(None),
    recompute: Optional[str] = typer.Option(None, help="none | selective | full (default none; with --search: only this mode)"),
    uneven_layers: bool = typer.Option(False, "--uneven-layers", help="let the last pipeline chunks hold fewer layers when pp·vpp does not divide them"),
    sequence_parallel: bool = typer.Option(True, "--sequence-parallel/--no-sequence-parallel", help="split norms / dropout over the tp ranks (Megatron SP)"),
    dtype: str = typer.Option("bf16", help="bf16 | fp8 (GEMMs)"),
    tokens: Optional[str] = typer.Option(None, help="training tokens for time / cost / energy, e.g. 15T or 300B"),
    price: Optional[float] = typer.Option(None, help="$/GPU-hour"),
    search: bool = typer.Option(False, "--search", help="enumerate every valid layout for --num-gpus and rank by throughput"),
    top: int = typer.Option(20, help="layouts to show with --search"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Training step time, tokens/s/GPU, MFU, memory per GPU, and time / $ / energy to train."""
    from .training import train_command

    kw: dict[str, Any] = dict(num_gpus=num_gpus, global_batch=global_batch, seq_len=seq_len, dtype=dtype, tokens=tokens, price_per_hour_usd=price,
                              uneven_layers=uneven_layers, sequence_parallel=sequence_parallel)
    layout = dict(tp=tp, pp=pp, vpp=vpp, cp=cp, dp=dp)
    choices = dict(ep=ep, zero=zero, micro_batch=micro_batch, recompute=recompute)
    if search:
        fixed = [f"--{k.replace('_', '-')}" for k, v in layout.items() if v is not None]
        if fixed:
            raise LlmsimError(f"--search chooses tp, pp, vpp, cp and dp itself, but {', '.join(fixed)} {'was' if len(fixed) == 1 else 'were'} given",
                              hint="drop " + " ".join(fixed) + " to search every layout, or leave out --search to estimate that one layout")
        # the other settings narrow the search to the given value
        for k, name in (("ep", "ep_options"), ("zero", "zero_stages"), ("micro_batch", "micro_batches"), ("recompute", "recompute_modes")):
            if choices[k] is not None:
                kw[name] = (choices[k],)
        kw["top"] = top
    else:
        kw.update({k: v for k, v in {**layout, **choices}.items() if v is not None})
    res = train_command(model, gpu, search=search, console=None if as_json else out, as_json=as_json, **kw)
    if as_json:
        _print_json(res)


@app.command()
def profile(
    out_dir: Path = typer.Option(..., "--out", help="directory for the hardware profile (parquet tables + metadata.json)"),
    budget_minutes: float = typer.Option(15.0, help="time budget for the measurements"),
    device: Optional[str] = typer.Option(None, help="CUDA device (default: current); with --dry-run a catalog GPU to plan for"),
    kinds: Optional[str] = typer.Option(None, help="comma-separated subset: gemm,context_attention,generation_attention,elementwise,collective"),
    framework: str = typer.Option("torch", help="framework label written into the GEMM tables"),
    seed: int = typer.Option(0),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the measurement plan without running anything (no GPU needed)"),
) -> None:
    """Measure GEMMs, attention, bandwidth and (under torchrun) collectives on this GPU; use the result with --kernels DIR.

    Needs PyTorch on a CUDA GPU (`pip install 'llmsim\\[profile]'`). Several GPUs:
    `torchrun --nproc-per-node 8 -m llmsim.profile --out DIR`.
    """
    from .profile import run_profile

    path = run_profile(out_dir, budget_minutes=budget_minutes, device=device, seed=seed, dry_run=dry_run,
                       kinds=kinds.split(",") if kinds else None, framework=framework)
    out.print(f"{'plan' if dry_run else 'profile'} written to {path}" + ("" if dry_run else f"; use it with --kernels {path}"))


@app.command()
def plan(
    model: str = typer.Option(..., "--model", "-m", help="catalog id, HF id or path to a config.json"),
    gpus: Optional[str] = typer.Option(None, help="GPU types with max counts and optional $/GPU-hour: h200-sxm:32,h100-sxm:64@2.5 (default: every catalog GPU, 8 each)"),
    isl: Optional[int] = typer.Option(None, help="input tokens per request"),
    osl: Optional[int] = typer.Option(None, help="output tokens per request"),
    input_dist: Optional[str] = typer.Option(None, help="fixed:N | uniform:A,B | normal:MEAN,STD | lognormal:MEAN,STD | trace:PATH"),
    output_dist: Optional[str] = typer.Option(None, help="as --input-dist"),
    lengths_from: Optional[Path] = typer.Option(None, help="resample (input, output) pairs from a trace"),
    trace: Optional[Path] = typer.Option(None, help="take request lengths (and prefix hash ids) from a trace"),
    prefix: int = typer.Option(0, help="tokens of shared prefix per request (prefix-cache hits)"),
    ttft: Optional[str] = typer.Option(None, help="TTFT target: 300ms, 0.3s or 300 (ms)"),
    tpot: Optional[str] = typer.Option(None, help="TPOT target: 10ms, 0.01s or 10 (ms)"),
    rate: Optional[float] = typer.Option(None, help="target requests/s (sizes every configuration to serve it)"),
    objective: Optional[str] = typer.Option(None, help="goodput | cost | gpus | energy (default: gpus with --rate, else goodput)"),
    percentile: float = typer.Option(90.0, help="SLO percentile"),
    backend_engine: str = typer.Option("vllm", help="vllm | sglang | trtllm | all"),
    disagg: bool = typer.Option(True, "--disagg/--no-disagg", help="also search prefill/decode disaggregation"),
    agg: bool = typer.Option(True, "--agg/--no-agg", help="search aggregated replicas"),
    precision: Optional[str] = typer.Option(None, help="WEIGHT or WEIGHT/KV list, e.g. bf16,fp8/fp8 (default bf16,fp8 and fp4 on Blackwell)"),
    max_gpus: Optional[int] = typer.Option(None, help="at most this many GPUs in all"),
    budget_usd_per_hour: Optional[float] = typer.Option(None, help="at most this many $/hour"),
    max_power_w: Optional[float] = typer.Option(None, help="at most this much provisioned power (GPUs x TDP, W)"),
    max_num_batched_tokens: Optional[str] = typer.Option(None, help="token budgets to search, e.g. 2048,8192 (default 1024..16384)"),
    chunked_prefill: Optional[bool] = typer.Option(None, "--chunked-prefill/--no-chunked-prefill", help="restrict to chunked prefill on/off (default both)"),
    max_concurrency: Optional[int] = typer.Option(None, help="cap on clients per engine in the search"),
    mix: bool = typer.Option(False, "--mix", help="also solve the cheapest heterogeneous GPU mix (Mélange; needs --rate)"),
    report: Optional[Path] = typer.Option(None, help="write a self-contained HTML report"),
    jobs: Optional[int] = typer.Option(None, help="worker processes (default: all cores)"),
    backend: str = typer.Option("local", help="local | ray"),
    kernels: str = typer.Option("auto", help="auto | none | profile | DIR of kernel tables"),
    seed: int = typer.Option(0),
    top: int = typer.Option(10, help="configurations to list"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Which GPUs, how many, in what layout and at what cost to serve MODEL under the latency targets."""
    from .planner import plan_command

    try:
        res = plan_command(model=model, gpus=gpus, isl=isl, osl=osl, input_dist=input_dist, output_dist=output_dist,
                           lengths_from=str(lengths_from) if lengths_from else None, trace=str(trace) if trace else None, prefix=prefix,
                           ttft=ttft, tpot=tpot, rate=rate, objective=objective, percentile=percentile, backend_engine=backend_engine,
                           disagg=disagg, aggregated=agg, precision=precision, max_gpus=max_gpus, budget_usd_per_hour=budget_usd_per_hour,
                           max_power_w=max_power_w, max_num_batched_tokens=max_num_batched_tokens, chunked_prefill=chunked_prefill,
                           max_concurrency=max_concurrency, mix=mix, report=report, jobs=jobs, backend=backend, kernels=kernels, seed=seed,
                           top=top, console=None if as_json else out, as_json=as_json)
    except LlmsimError as e:  # the workload's API names (isl, input_dist ...) as the flags typed
        raise _as_serve_flags(e) from None
    if as_json:
        _print_json(res)
    feasible = res.get("feasible") if isinstance(res, dict) else getattr(res, "feasible", True)
    if feasible is False:
        raise SystemExit(1)  # no configuration meets the targets (the closest one is shown)


@app.command()
def calibrate(
    files: list[Path] = typer.Argument(..., help="kernel tables (AIConfigurator-format parquet files or directories, incl. `llmsim profile` output) "
                                                 "or end-to-end benchmark rows (CSV in the silicon format of `llmsim validate silicon`)"),
    gpu: str = typer.Option(..., "--gpu", "-g", help="the GPU the measurements were taken on (catalog id or spec file)"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="write the calibrated spec (YAML; use it with --gpu FILE)"),
    folds: int = typer.Option(5, help="k for k-fold cross-validation (kernel tables: by shape group; benchmark rows: by deployment configuration)"),
    seed: int = typer.Option(0),
    max_rows: int = typer.Option(5000, help="kernel tables: rows per fitting stage (subsampled, seeded)"),
    metric: str = typer.Option("tpot", help="benchmark rows: what the fit minimises: tpot, ttft or both"),
    system: Optional[str] = typer.Option(None, help="benchmark rows: use rows of this `system` value (default: every row whose system is this GPU)"),
    jobs: int = typer.Option(1, help="benchmark rows: worker processes for the simulations"),
    rows_out: Optional[Path] = typer.Option(None, "--rows", help="benchmark rows: write per-row measured / shipped / held-out predictions (CSV)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fit the roofline's efficiency parameters to your measurements, with held-out error before and after."""
    from .hardware import get_gpu

    _output_file(out_file, "--out (the calibrated spec)", inputs=(*files, gpu))
    _output_file(rows_out, "--rows (per-row results)", inputs=(*files, gpu), suffixes=(".csv",))
    g = get_gpu(gpu)
    # the written spec inherits what --gpu named: a catalog id, or that file (absolute path)
    gp = Path(gpu).expanduser()
    base = str(gp.resolve()) if gp.is_file() else g.name
    csvs = [f for f in files if f.suffix.lower() == ".csv"]
    if csvs and len(csvs) != len(files):
        raise LlmsimError("pass either kernel tables or benchmark CSVs to one `llmsim calibrate` call, not both",
                          hint="calibrate on kernel tables first (--out k.yaml), then on the benchmarks with --gpu k.yaml")
    if csvs:
        _calibrate_serving(g, base, csvs, out_file, folds, seed, metric, system, jobs, rows_out, as_json)
        return
    from . import calibrate as cal

    tables, coll = cal.read_measurements([str(f) for f in files])
    rep = cal.kfold_calibrate(g, tables, k=folds, seed=seed, max_rows=max_rows, collectives=coll)
    if out_file is not None:
        cal.write_spec(g, rep.efficiency, out_file, note=f"on {', '.join(str(f) for f in files)} ({folds}-fold CV)", base=base)
    if as_json:
        d = rep.to_dict()
        d["spec_file"] = str(out_file) if out_file else None
        _print_json(d)
        return
    t = Table(title=f"{g.name}: held-out error (median / p90 APE), {folds}-fold cross-validation by shape (NCCL: by collective x GPUs x dtype)")
    for c in ("table", "rows", "uncalibrated roofline", f"shipped {g.name} defaults", "calibrated (held out)"):
        t.add_column(c, justify="left" if c == "table" else "right")
    for kind, v in rep.errors.items():
        cells = [f"{v[m].median_ape:.1f}% / {v[m].p90_ape:.1f}%" for m in ("uncalibrated", "shipped", "calibrated")]
        t.add_row(kind, f"{v['calibrated'].n:,}", *cells)
    out.print(t)
    if out_file is not None:
        out.print(f"calibrated spec written to {out_file}: use it with --gpu {out_file}")


def _calibrate_serving(g, base, csvs, out_file, folds, seed, metric, system, jobs, rows_out, as_json) -> None:
    """`llmsim calibrate` on end-to-end benchmark rows (llmsim.calibrate_serving)."""
    from . import calibrate_serving as cs

    if jobs < 1:
        raise LlmsimError(f"--jobs must be ≥ 1, got {jobs}")
    rows, skipped = cs.silicon_rows(csvs, g, system=system)
    rep = cs.kfold_calibrate_serving(g, rows, k=folds, metric=metric, seed=seed, jobs=jobs, skipped=skipped)
    if out_file is not None:
        from .calibrate import write_spec

        write_spec(g, rep.efficiency, out_file, base=base, aliases=(g.name,),
                   note=f"on end-to-end benchmarks {', '.join(str(f) for f in csvs)} ({rep.rows} rows, fit on {metric}, {folds}-fold CV)")
    if rows_out is not None:
        import csv

        rows_out.parent.mkdir(parents=True, exist_ok=True)
        with open(rows_out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rep.per_row[0]))
            w.writeheader()
            w.writerows(rep.per_row)
    if as_json:
        d = rep.to_dict()
        d["spec_file"] = str(out_file) if out_file else None
        _print_json(d)
        return
    out.print(f"{rep.rows} benchmark rows ({rep.configs} configurations) measured on {g.name}; "
              f"{sum(rep.skipped.values())} other rows not used")
    t = Table(title=f"{g.name}: mean TTFT / TPOT error (median / p90 APE), {folds}-fold cross-validation by configuration, fit on {metric}")
    for c in ("metric", "backend", "rows", f"shipped {g.name}", "calibrated (held out)", "calibrated (in sample)"):
        t.add_column(c, justify="left" if c in ("metric", "backend") else "right")
    blocks = [("all", rep.errors)] + list(rep.by_backend.items())
    for m in ("tpot", "ttft"):
        for name, b in blocks:
            v = b[m]
            cells = [f"{v[k].median_ape:.1f}% / {v[k].p90_ape:.1f}%" for k in ("shipped", "held_out", "in_sample")]
            t.add_row(m.upper(), name, f"{v['held_out'].n:,}", *cells)
    out.print(t)
    knobs = ", ".join(f"{k} x{v:.3f}" for k, v in rep.scales.items() if k not in rep.inactive)
    out.print(f"fitted time scales (all rows; > 1 = slower than the shipped spec): {knobs or 'none'}"
              + (f"; not identifiable from these rows: {', '.join(rep.inactive)}" if rep.inactive else ""))
    out.print(f"surrogate vs exact simulation at the fit (median): TPOT {rep.surrogate_median_ape['tpot']:.1f}%, "
              f"TTFT {rep.surrogate_median_ape['ttft']:.1f}%")
    e = rep.errors[metric if metric != "both" else "tpot"]
    if e["in_sample"].median_ape > e["shipped"].median_ape:
        out.print(f"[yellow]warning:[/] the fit does not reduce the {metric} median error even in sample "
                  f"({e['shipped'].median_ape:.1f}% → {e['in_sample'].median_ape:.1f}%): these errors are not a global "
                  "hardware-efficiency offset (see `llmsim validate silicon` for their structure); keep the shipped spec")
    if out_file is not None:
        out.print(f"calibrated spec written to {out_file}: use it with --gpu {out_file}")


@validate_app.command("silicon")
def validate_silicon(
    file: Path = typer.Argument(..., help="CSV in the AIConfigurator silicon format"),
    limit: Optional[int] = typer.Option(None, help="only the first N rows"),
    jobs: int = typer.Option(1, help="worker processes"),
    as_json: bool = typer.Option(False, "--json"),
    rows_out: Optional[Path] = typer.Option(None, "--rows", help="write per-row predicted vs measured (CSV)"),
    rounds: int = typer.Option(VALIDATE_ROUNDS, "--rounds", help="benchmark protocol: requests per client (the benchmark sent rounds x concurrency requests; 10 = InferenceMAX's --num-prompts CONC*10)"),
    warmup_rounds: int = typer.Option(VALIDATE_WARMUP_ROUNDS, "--warmup-rounds", help="benchmark protocol: requests per client excluded as warm-up (0 = every request counted)"),
    kernels: str = typer.Option("auto", help="auto | none | profile (the bundled `llmsim profile` run of the row's GPU) | DIR of kernel tables; applied to rows on the GPU the tables were measured on, other rows use auto"),
    range_ratio: Optional[float] = typer.Option(None, "--range-ratio", help="benchmark protocol: lengths uniform from int(L x ratio) to L (benchmark_serving --random-range-ratio; 1 = fixed); default: per row, 0.8 for InferenceMAX / InferenceX rows (their recipe), fixed otherwise"),
    count_repeats: bool = typer.Option(False, "--count-repeats", help="simulate and count every copy of a measurement listed more than once (same benchmark, identical TTFT and TPOT); default: the first copy counts, later ones are skipped naming it"),
) -> None:
    """Simulate every benchmark row of FILE and report predicted vs measured TTFT and TPOT.

    Each row is simulated as the benchmark that measured it: a closed loop of `concurrency`
    clients starting together, rounds x concurrency requests, means over all but the first
    warmup_rounds x concurrency completions."""
    from .serving.validate import validate_silicon as run

    _output_file(rows_out, "--rows (per-row results)", inputs=(file,), suffixes=(".csv",))
    rep = run(file, limit=limit, jobs=jobs, rounds=rounds, warmup_rounds=warmup_rounds, kernels=kernels, range_ratio=range_ratio,
              count_repeats=count_repeats)
    if rows_out is not None:
        rep.write_rows(rows_out)
    if as_json:
        _print_json(rep.to_dict())
    else:
        rep.render(out)
    if rep.rows and not any(r["status"] == "ok" for r in rep.rows):
        # a report that compares nothing is a failed check, not a pass (exit status 1)
        err.print(f"[bold red]error:[/] none of the {len(rep.rows):,} rows could be modelled, so nothing was compared "
                  f"(each row's skip reason is {'in skipped[]' if as_json else 'listed above'})")
        raise typer.Exit(1)


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List catalog models with their parameter counts."""
    from .models import list_models

    ms = list_models()
    if as_json:
        _print_json([{"name": m.name, "hf_id": m.hf_id, "architecture": m.architecture, "total_params": m.total_params, "active_params": m.active_params} for m in ms])
        return
    t = Table(title="llmsim model catalog")
    for c in ("id", "Hugging Face id", "type", "total params", "active params"):
        t.add_column(c)
    for m in ms:
        t.add_row(m.name, m.hf_id or "", m.architecture, f"{m.total_params / 1e9:,.2f} B", f"{m.active_params / 1e9:,.2f} B")
    out.print(t)


@models_app.command("show")
def models_show(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one model's architecture and parameter counts."""
    from .models import get_model

    s = get_model(name).summary()
    if as_json:
        _print_json(s)
        return
    t = Table(title=s["name"], show_header=False)
    for k, v in s.items():
        if v not in (0, None, "", [], (), False) or k in ("total_params", "active_params"):
            t.add_row(k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    out.print(t)


@gpus_app.command("list")
def gpus_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List catalog GPUs."""
    from .hardware import list_gpus

    gs = list_gpus()
    if as_json:
        _print_json([g.model_dump(mode="json", exclude={"efficiency"}) for g in gs])
        return
    t = Table(title="llmsim hardware catalog")
    for c in ("id", "bf16 TFLOP/s", "fp8", "fp4", "memory GiB", "HBM GB/s", "NVLink GB/s", "$/h"):
        t.add_column(c)
    for g in gs:
        pk = g.peak_tflops
        t.add_row(g.name, f"{pk['bf16']:,.0f}", f"{pk.get('fp8', 0):,.0f}" if "fp8" in pk else "-", f"{pk['fp4']:,.0f}" if "fp4" in pk else "-",
                  f"{g.memory_gib:.1f}", f"{g.memory_bandwidth_gbps:,.0f}", f"{g.nvlink_bandwidth_gbps:,.0f}", f"{g.price_per_hour_usd:.2f}")
    out.print(t)


@gpus_app.command("show")
def gpus_show(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one GPU's spec (a catalog id or a YAML/JSON file)."""
    from .hardware import get_gpu

    g = get_gpu(name)
    d = g.model_dump(mode="json")
    d["memory_bytes"] = g.memory_bytes
    d["memory_bandwidth_bytes_per_s"] = g.memory_bandwidth_bytes_per_s
    if as_json:
        _print_json(d)
        return
    t = Table(title=g.name, show_header=False)
    for k, v in d.items():
        t.add_row(k, str(v))
    out.print(t)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning LlmsimError into a clear message and exit status 2."""
    try:
        # standalone mode: typer/click print usage errors themselves and exit with status 2
        app(args=argv, prog_name="llmsim")
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    except LlmsimError as e:
        from rich.markup import escape

        # soft wrap: one line each (the terminal folds it), so a long path or message is never split
        # by inserted newlines for a log or a grep
        err.print(f"[bold red]error:[/] {escape(e.message)}", soft_wrap=True)
        if e.hint:
            err.print(f"[yellow]hint:[/] {escape(e.hint)}", soft_wrap=True)
        raise SystemExit(2)

if __name__ == "__main__":  # pragma: no cover
    main()
