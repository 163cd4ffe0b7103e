"""TrainResult: one training estimate, its JSON form (`to_dict`) and its console rendering.

JSON contract (stable keys): ``step_time_s``, ``tokens_per_s_per_gpu``, ``model_tflops_per_gpu``,
``mfu``, ``hfu``, ``fits``, ``message``, ``memory_per_gpu_bytes``, ``step_time_breakdown_s``
(compute, recompute, tp_comm, cp_comm, ep_comm, pp_comm, dp_comm, pipeline_bubble, optimizer;
they sum to ``step_time_s``), ``memory_breakdown_bytes`` (weights, gradients, optimizer_states,
zero3_gather_buffer, activations, fragmentation, runtime_overhead; they sum to
``memory_per_gpu_bytes``), ``layout`` (tp, pp, vpp, cp, ep, dp, zero, micro_batch, recompute),
``comm_tiers``, ``training`` (time / cost / energy for ``tokens``, or null).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hardware.spec import GIB

MFU_DEFINITION = (
    "MFU = model FLOPs / (step time x GPUs x dense peak of the training dtype); model FLOPs per token = "
    "6 x N_mm (4 x N_mm with LoRA) + 6 x sum over layers of heads x (d_qk + d_v) x mean keys attended "
    "(s/2 causal, i.e. 12 L h s / 2 for MHA); N_mm = active matmul weights incl. the LM head, excl. embedding lookups. "
    "HFU adds recomputed forward FLOPs."
)


@dataclass
class TrainResult:
    model: str
    gpu: str
    num_gpus: int
    layout: dict
    dtype: str
    seq_len: int
    global_batch: int
    micro_batches_per_step: int
    tokens_per_step: int
    options: dict
    fits: bool
    message: str
    step_time_s: float
    step_time_breakdown_s: dict
    bubble_fraction: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    model_flops_per_token: float
    model_tflops_per_gpu: float
    mfu: float
    hfu: float
    peak_tflops_per_gpu: float
    memory_per_gpu_bytes: float
    memory_breakdown_bytes: dict
    memory_capacity_bytes: float
    comm_tiers: dict
    params_total: int
    params_active: int
    params_per_gpu: float
    training: dict | None = None
    mfu_definition: str = MFU_DEFINITION
    extra: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        return d

    # ------------------------------------------------------------------ console
    def render(self, console=None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        lay = self.layout
        title = (f"{self.model} on {self.num_gpus} x {self.gpu}  |  tp={lay['tp']} pp={lay['pp']} vpp={lay['vpp']} "
                 f"cp={lay['cp']} ep={lay['ep']} dp={lay['dp']} zero={lay['zero']} mb={lay['micro_batch']} "
                 f"recompute={lay['recompute']}  |  {self.dtype}, seq {self.seq_len}, global batch {self.global_batch}")
        console.print(f"[bold]{title}[/bold]")
        t = Table(title="step time", show_header=True)
        t.add_column("part")
        t.add_column("seconds", justify="right")
        t.add_column("share", justify="right")
        for k, v in self.step_time_breakdown_s.items():
            if v > 0:
                t.add_row(k, f"{v:.4g}", f"{100 * v / self.step_time_s:.1f}%")
        t.add_row("[bold]step[/bold]", f"[bold]{self.step_time_s:.4g}[/bold]", "100%")
        console.print(t)
        mt = Table(title="memory per GPU", show_header=True)
        mt.add_column("part")
        mt.add_column("GiB", justify="right")
        for k, v in self.memory_breakdown_bytes.items():
            mt.add_row(k, f"{v / GIB:.2f}")
        mt.add_row("[bold]total[/bold]", f"[bold]{self.memory_per_gpu_bytes / GIB:.2f}[/bold] of {self.memory_capacity_bytes / GIB:.1f}")
        console.print(mt)
        console.print(
            f"tokens/s/GPU {self.tokens_per_s_per_gpu:,.0f}  |  model TFLOP/s/GPU {self.model_tflops_per_gpu:.1f}  |  "
            f"MFU {100 * self.mfu:.1f}%  HFU {100 * self.hfu:.1f}%  |  bubble {100 * self.bubble_fraction:.1f}%  |  "
            f"links: " + ", ".join(f"{k}={v}" for k, v in self.comm_tiers.items())
        )
        if self.training:
            tr = self.training
            console.print(
                f"{tr['tokens']:.3g} tokens: {tr['steps']:,} steps, {tr['time_days']:.1f} days, "
                f"{tr['gpu_hours']:,.0f} GPU-hours, ${tr['cost_usd']:,.0f}, {tr['energy_mwh']:.1f} MWh; "
                f"{tr['train_flops']:.3g} FLOPs = {tr['flops_vs_6nd']:.3f} x 6ND"
            )
        style = "green" if self.fits else "red"
        console.print(f"[{style}]{self.message}[/{style}]")


class SearchResults(list):
    """Layouts ranked by throughput (a list of TrainResult) with the search's bookkeeping.

    ``message`` says why the search found nothing (no layout passes the divisibility rules, or
    none fits in memory); empty when there is nothing to explain."""

    def __init__(self, items=(), *, evaluated: int = 0, valid: int = 0, fitting: int = 0, elapsed_s: float = 0.0, query: dict | None = None,
                 message: str = ""):
        super().__init__(items)
        self.message = message
        self.evaluated = evaluated
        self.valid = valid
        self.fitting = fitting
        self.elapsed_s = elapsed_s
        self.query = query or {}

    def to_dict(self) -> dict:
        return {
            "query": self.query, "candidates": self.evaluated, "valid_layouts": self.valid, "fitting_layouts": self.fitting,
            "elapsed_s": self.elapsed_s, "message": self.message, "results": [r.to_dict() for r in self],
        }

    def render(self, console=None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        t = Table(title=f"top {len(self)} layouts ({self.valid:,} valid, {self.fitting:,} fit; searched in {self.elapsed_s:.2f} s)")
        for c in ("#", "tp", "pp", "vpp", "cp", "ep", "dp", "zero", "mb", "recompute", "step s", "tok/s/GPU", "MFU", "mem GiB", "fits"):
            t.add_column(c, justify="right")
        for i, r in enumerate(self, 1):
            lay = r.layout
            t.add_row(str(i), *(str(lay[k]) for k in ("tp", "pp", "vpp", "cp", "ep", "dp", "zero", "micro_batch")), lay["recompute"],
                      f"{r.step_time_s:.3g}", f"{r.tokens_per_s_per_gpu:,.0f}", f"{100 * r.mfu:.1f}%",
                      f"{r.memory_per_gpu_bytes / GIB:.1f}", "yes" if r.fits else "no")
        console.print(t)
        if self.message:
            console.print(f"[{'yellow' if len(self) else 'red'}]{self.message}[/]")
