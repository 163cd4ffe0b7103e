"""Plan reports: a terminal summary (rich) and a self-contained HTML page (plotly).

The HTML embeds plotly.js inline (`include_plotlyjs=True` on the first figure, the others reuse
it), so the file opens offline: no script is fetched at view time. Contents: the answer and its
launch / benchmark commands, the ranked configurations, interactive plots — throughput per GPU
against tokens/s per user (every simulated point, the Pareto frontier, the SLO line), cost against
TPOT, and TTFT / TPOT / throughput against concurrency for the best families — and the rejected
families with their reasons.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from ..errors import LlmsimError


def _f(v, fmt: str = ",.1f", none: str = "-") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, fmt)


# ----------------------------------------------------------------------------- terminal


def render_console(res, console, top: int = 10) -> None:
    from rich.markup import escape
    from rich.table import Table

    p = f"p{res.percentile:g}"
    head = f"{res.model} — {res.workload.description}; {res.slo_text}"
    if res.rate is not None:
        head += f"; target {res.rate:g} req/s"
    console.print(f"[bold]{head}[/] (objective: {res.objective})")
    if res.best is None:
        console.print(f"[red]{escape(res.message)}[/]")
    from rich import box

    t = Table(title=f"best configurations ({len(res.configs)} sized, {res.stats.get('simulated_candidates', 0)} candidates simulated)",
              caption=("latencies in ms; sim: ok / miss = re-simulated end to end (meets / misses the SLOs), "
                       "unchecked = predicted from its parts only; verified-passing rows first"), box=box.SIMPLE_HEAD, pad_edge=False)
    wide = getattr(console, "width", 200) >= 120
    cols = ("#", "deployment", "GPUs", "tok/s/GPU", "tok/s/user", f"TTFT {p}", f"TPOT {p}", "$/Mtok", "J/tok", "sim")
    keep = [k for k, col in enumerate(cols) if wide or col not in ("tok/s/user", "J/tok")]
    for col in (cols[k] for k in keep):
        t.add_column(col, justify="left" if col == "deployment" else "right", min_width=24 if col == "deployment" else None,
                     overflow="fold")
    for i, c in enumerate(res.configs[:top], 1):
        ver = "[dim]unchecked[/]" if c.verified is None else ("[green]ok[/]" if c.verified_meets else "[red]miss[/]")
        row = (str(i), escape(c.short_label), str(c.num_gpus), _f(c.output_tokens_per_s_per_gpu, ",.0f"), _f(c.tokens_per_s_per_user, ",.1f"),
               _f(c.metric("ttft_ms"), ",.1f"), _f(c.metric("tpot_ms"), ",.2f"), _f(c.usd_per_million_output_tokens, ",.3f"),
               _f(c.energy_j_per_output_token, ",.3f"), ver)
        t.add_row(*(row[k] for k in keep))
    console.print(t)
    if res.best is not None:
        b = res.best
        console.print(f"[green]{escape(res.message)}[/]")
        if b.note:
            console.print(f"note: {escape(b.note)}")
        ln = res.launch()
        console.print(f"[bold]launch ({ln['simulated_engine']}):[/]")
        for cmd in ln["serve"][ln["simulated_engine"]]:
            console.print(cmd, markup=False, highlight=False)
        console.print("[bold]benchmark:[/]")
        console.print(ln["benchmark"]["vllm_bench_serve"], markup=False, highlight=False)
    elif res.closest:
        console.print(f"closest: {escape(res.closest['configuration'])}: {escape(res.closest['achieved'])}")
    if res.mix is not None:  # --mix: the Mélange answer (or why there is none) belongs on the console too, not only in --json
        m = res.mix
        colour = "green" if m.get("feasible") else "yellow"
        console.print(f"[bold]heterogeneous GPU mix (Mélange):[/] [{colour}]{escape(str(m.get('message') or ''))}[/]")
        for it in m.get("instances") or []:
            console.print(f"  {it['count']} x {escape(str(it['instance']))}: {it['gpus']} GPUs, ${_f(it['usd_per_hour'], ',.2f')}/h")
    if res.rejected:
        r = Table(title=f"rejected ({len(res.rejected)})", show_lines=False)
        r.add_column("configuration")
        r.add_column("why")
        for x in res.rejected[:40]:
            r.add_row(escape(x.what), escape(x.reason))
        if len(res.rejected) > 40:
            r.add_row("...", f"{len(res.rejected) - 40} more in --json / the HTML report")
        console.print(r)
    s = res.stats
    console.print(f"searched {s.get('candidates', 0)} candidates ({s.get('families', 0)} families): pruned {s.get('pruned_precision', 0)} by "
                  f"precision, {s.get('pruned_memory', 0)} by memory, {s.get('pruned_latency', 0)} by latency floors, "
                  f"{s.get('pruned_rule_pp', 0)} pp families by dominance; simulated {s.get('simulated_candidates', 0)} "
                  f"({s.get('simulations', 0)} simulations + {s.get('verification_simulations', 0)} end-to-end) in {s.get('wall_s', 0):.2f} s")


# ----------------------------------------------------------------------------- HTML


def _figures(res):
    import plotly.graph_objects as go

    p = f"p{res.percentile:g}"
    figs = []
    pts = res.fronts.get("points", [])
    front = res.fronts.get("throughput_vs_interactivity", [])
    # 1. throughput per GPU vs tokens/s per user
    f1 = go.Figure()
    for mode, sym in (("aggregated", "circle"), ("disaggregated", "diamond")):
        for ok, color in ((True, None), (False, "lightgray")):
            sel = [q for q in pts if q.mode == mode and q.meets_slo == ok]
            if not sel:
                continue
            f1.add_trace(go.Scatter(
                x=[q.tokens_per_s_per_user for q in sel], y=[q.output_tokens_per_s_per_gpu for q in sel], mode="markers",
                name=f"{mode} ({'meets SLO' if ok else 'misses SLO'})", marker=dict(symbol=sym, size=8, color=color, opacity=0.85 if ok else 0.5),
                text=[f"{q.family}<br>concurrency {q.concurrency}<br>TTFT {p} {_f(q.ttft_ms)} ms<br>TPOT {p} {_f(q.tpot_ms, '.2f')} ms" for q in sel],
                hoverinfo="text+x+y"))
    if front:
        f1.add_trace(go.Scatter(x=[q.tokens_per_s_per_user for q in front], y=[q.output_tokens_per_s_per_gpu for q in front],
                                mode="lines", name="Pareto frontier", line=dict(color="black", dash="dash")))
    if res.tpot_ms:
        f1.add_vline(x=1e3 / res.tpot_ms, line=dict(color="red", dash="dot"), annotation_text=f"TPOT {res.tpot_ms:g} ms")
    if res.best is not None:
        b = res.best
        f1.add_trace(go.Scatter(x=[b.tokens_per_s_per_user], y=[b.output_tokens_per_s_per_gpu], mode="markers", name="chosen",
                                marker=dict(symbol="star", size=18, color="gold", line=dict(color="black", width=1))))
    f1.update_layout(title="Throughput per GPU vs interactivity", xaxis_title="output tokens/s per user (1000 / mean TPOT)",
                     yaxis_title="output tokens/s per GPU", template="plotly_white", height=520)
    figs.append(("frontier", f1))
    # 2. cost vs latency
    f2 = go.Figure()
    sel = [q for q in pts if q.usd_per_million_output_tokens is not None and q.tpot_ms is not None]
    if sel:
        f2.add_trace(go.Scatter(x=[q.tpot_ms for q in sel], y=[q.usd_per_million_output_tokens for q in sel], mode="markers",
                                marker=dict(color=["#2a7" if q.meets_slo else "#bbb" for q in sel]), name="simulated points",
                                text=[f"{q.family}<br>concurrency {q.concurrency}" for q in sel], hoverinfo="text+x+y"))
        cf = res.fronts.get("cost_vs_latency", [])
        if cf:
            f2.add_trace(go.Scatter(x=[q.tpot_ms for q in cf], y=[q.usd_per_million_output_tokens for q in cf], mode="lines",
                                    name="Pareto frontier", line=dict(color="black", dash="dash")))
    if res.tpot_ms:
        f2.add_vline(x=res.tpot_ms, line=dict(color="red", dash="dot"), annotation_text="TPOT target")
    f2.update_layout(title="Cost vs latency", xaxis_title=f"TPOT {p} (ms)", yaxis_title="$ per million output tokens",
                     template="plotly_white", height=480, yaxis_type="log")
    figs.append(("cost", f2))
    # 3. latency / throughput curves of the best families
    from plotly.subplots import make_subplots

    f3 = make_subplots(rows=1, cols=3, subplot_titles=(f"TTFT {p} (ms)", f"TPOT {p} (ms)", "output tokens/s per GPU"))
    shown = []
    for c in res.configs:
        for sw in ([c.agg] if c.mode == "aggregated" else [c.decode]):
            if sw is not None and sw not in shown and len(sw.points) > 1:
                shown.append(sw)
        if len(shown) >= 6:
            break
    for sw in shown:
        xs = [q.concurrency for q in sw.points]
        name = sw.candidate.label
        f3.add_trace(go.Scatter(x=xs, y=[q.ttft_ms for q in sw.points], mode="lines+markers", name=name, legendgroup=name), 1, 1)
        f3.add_trace(go.Scatter(x=xs, y=[q.tpot_ms for q in sw.points], mode="lines+markers", name=name, legendgroup=name, showlegend=False), 1, 2)
        f3.add_trace(go.Scatter(x=xs, y=[q.output_tokens_per_s_per_gpu for q in sw.points], mode="lines+markers", name=name, legendgroup=name,
                                showlegend=False), 1, 3)
    if res.ttft_ms:
        f3.add_hline(y=res.ttft_ms, line=dict(color="red", dash="dot"), row=1, col=1)
    if res.tpot_ms:
        f3.add_hline(y=res.tpot_ms, line=dict(color="red", dash="dot"), row=1, col=2)
    for k in (1, 2, 3):
        f3.update_xaxes(title_text="concurrency (clients per engine)", type="log", row=1, col=k)
    f3.update_layout(title="Latency and throughput against concurrency (simulated points of the best families)", template="plotly_white",
                     height=460, legend=dict(orientation="h", y=-0.3))
    figs.append(("curves", f3))
    return figs


def _table(rows: list[list[str]], head: list[str]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
pre{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:12px;border:1px solid #e4e4e4}
.ok{color:#176f2c}.bad{color:#a61b1b}.muted{color:#666;font-size:13px}"""


def build_html(res, top: int = 15) -> str:
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise LlmsimError("the HTML report needs plotly", hint="pip install plotly") from None
    p = f"p{res.percentile:g}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>llmsim plan: {html.escape(res.model)}</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>llmsim plan — {html.escape(res.model)}</h1>")
    q = f"{html.escape(res.workload.description)}; {html.escape(res.slo_text)}"
    if res.rate is not None:
        q += f"; target {res.rate:g} req/s"
    gp = ", ".join(f"{g.name} ×{g.max_count} (${g.price_per_hour_usd:g}/h)" for g in res.gpus)
    parts.append(f"<p>{q}. GPUs: {html.escape(gp)}. Precisions: {', '.join(x.label for x in res.precisions)}. Engines: {', '.join(res.engines)}. "
                 f"Modes: {', '.join(res.modes)}. Objective: <b>{res.objective}</b>.</p>")
    cls = "ok" if res.best is not None else "bad"
    parts.append(f"<p class='{cls}'><b>{html.escape(res.message)}</b></p>")
    if res.best is not None:
        b = res.best
        d = b.to_dict(res.percentile)
        rows = [["deployment", b.label], ["GPUs", f"{b.num_gpus} ({', '.join(f'{n}× {k}' for k, n in b.gpus_by_type.items())})"],
                ["concurrency (clients)", str(b.concurrency)], ["output tokens/s", _f(d["output_tokens_per_s"], ",.0f")],
                ["output tokens/s per GPU", _f(b.output_tokens_per_s_per_gpu, ",.0f")], ["tokens/s per user", _f(b.tokens_per_s_per_user)],
                [f"TTFT {p}", _f(b.metric('ttft_ms')) + " ms"], [f"TPOT {p}", _f(b.metric('tpot_ms'), ',.2f') + " ms"],
                ["$/hour", _f(b.usd_per_hour, ",.2f")], ["$ per million output tokens", _f(b.usd_per_million_output_tokens, ",.3f")],
                ["energy per output token", _f(b.energy_j_per_output_token, ",.3f") + " J"],
                ["verified end to end", "yes" if b.verified_meets else "no"]]
        if b.note:
            rows.append(["note", b.note])
        parts.append("<h2>Chosen configuration</h2>" + _table(rows, ["", ""]))
        ln = res.launch()
        parts.append("<h2>Launch commands</h2><p class='muted'>"
                     + html.escape(" ".join(ln["notes"])) + "</p>")
        for eng, cmds in ln["serve"].items():
            parts.append(f"<h3>{html.escape(eng)}</h3><pre>{html.escape(chr(10).join(cmds))}</pre>")
        parts.append("<h2>Benchmark (verify the plan)</h2><pre>" + html.escape(ln["benchmark"]["vllm_bench_serve"]) + "</pre><pre>"
                     + html.escape(ln["benchmark"]["aiperf"]) + "</pre>")
    elif res.closest:
        parts.append(f"<p>Closest: {html.escape(res.closest['configuration'])}: {html.escape(res.closest['achieved'])}</p>")
    figs = _figures(res)
    parts.append("<h2>Plots</h2>")
    for i, (_name, fig) in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), include_mathjax=False, config={"displaylogo": False}))
    rows = []
    for i, c in enumerate(res.configs[:top], 1):
        rows.append([i, c.label, c.num_gpus, _f(c.output_tokens_per_s_per_gpu, ",.0f"), _f(c.tokens_per_s_per_user),
                     _f(c.metric("ttft_ms")), _f(c.metric("tpot_ms"), ",.2f"), _f(c.usd_per_hour, ",.2f"),
                     _f(c.usd_per_million_output_tokens, ",.3f"), _f(c.energy_j_per_output_token, ",.3f"),
                     "unchecked (predicted)" if c.verified is None else ("yes" if c.verified_meets else "missed")])
    parts.append("<h2>Ranked configurations</h2>" + _table(rows, ["#", "deployment", "GPUs", "tok/s/GPU", "tok/s/user", f"TTFT {p} ms",
                                                                  f"TPOT {p} ms", "$/h", "$/Mtok", "J/tok", "verified"]))
    if res.mix:
        m = res.mix
        parts.append("<h2>Heterogeneous GPU mix (Mélange)</h2>")
        if m.get("feasible"):
            parts.append(_table([[k["instance"], k["count"], _f(k["usd_per_hour"], ",.2f")] for k in m["instances"]], ["instance", "count", "$/h"]))
            parts.append(f"<p>total ${_f(m['usd_per_hour'], ',.2f')}/h; best single GPU type ${_f(m.get('best_single_type_usd_per_hour'), ',.2f')}/h</p>")
        else:
            parts.append(f"<p>{html.escape(m.get('message', ''))}</p>")
    parts.append("<h2>Rejected configurations</h2>" + _table([[r.what, r.stage, r.reason] for r in res.rejected], ["configuration", "stage", "reason"]))
    s = res.stats
    parts.append(f"<p class='muted'>searched {s.get('candidates', 0)} candidates in {s.get('families', 0)} families; simulated "
                 f"{s.get('simulated_candidates', 0)} ({s.get('simulations', 0)} simulations, {s.get('verification_simulations', 0)} end-to-end) "
                 f"in {s.get('wall_s', 0):.2f} s; seed {res.seed}. Generated by llmsim plan.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(res, path) -> str:
    p = Path(path)
    text = build_html(res)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    except OSError as e:
        raise LlmsimError(f"cannot write the report {p}: {e.strerror or e}") from None
    return str(p)
