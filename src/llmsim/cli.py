"""Command-line interface: `llmsim estimate`, `llmsim models ...`, `llmsim gpus ...`.

Every command takes `--json` for machine-readable output with unit-suffixed keys.
Bad input prints what is wrong and how to fix it, and exits with status 2.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import LlmsimError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Predict speed, memory and cost of LLMs on GPUs, and explain every number.")
models_app = typer.Typer(no_args_is_help=True, help="The built-in model catalog.")
gpus_app = typer.Typer(no_args_is_help=True, help="The built-in hardware catalog.")
app.add_typer(models_app, name="models")
app.add_typer(gpus_app, name="gpus")

out = Console()
err = Console(stderr=True)
GIB = 1024**3


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
    weight_dtype: str = typer.Option("bf16", help="bf16 | fp8 | int8 | int4 | fp4"),
    act_dtype: Optional[str] = typer.Option(None, help="bf16 | fp8 (default: fp8 with fp8/fp4 weights)"),
    kv_dtype: Optional[str] = typer.Option(None, help="bf16 | fp8 | int8 | int4"),
    kernels: str = typer.Option("auto", help="'auto' (bundled tables when measured on this GPU), 'none' (roofline only), or a directory of AIConfigurator-format kernel tables"),
    framework: Optional[str] = typer.Option(None, help="which measured GEMM table: trtllm | vllm"),
    memory_fraction: float = typer.Option(0.9, help="fraction of GPU memory the engine may use"),
    block_size: int = typer.Option(16, help="KV-cache block size in tokens"),
    price: Optional[float] = typer.Option(None, help="$/GPU-hour (default: the catalog's on-demand price)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    explain: bool = typer.Option(False, "--explain", help="per-operator table: time, FLOPs, bytes, bound, source"),
) -> None:
    """Prefill latency, TPOT, end-to-end latency, throughput and memory of a static batch."""
    from .estimate import estimate as run

    r = run(
        model, gpu, tp=tp, pp=pp, dp=dp, ep=ep, batch=batch, isl=isl, osl=osl,
        weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype, kernels=kernels,
        framework=framework, memory_fraction=memory_fraction, block_size=block_size, price_per_hour_usd=price,
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
    t.add_row("fits", "[green]yes[/]" if r.fits else f"[red]{r.message}[/]")
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
        err.print(f"[bold red]error:[/] {e.message}")
        if e.hint:
            err.print(f"[yellow]hint:[/] {e.hint}")
        raise SystemExit(2)

if __name__ == "__main__":  # pragma: no cover
    main()
