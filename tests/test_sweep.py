"""Load sweeps (`serving/sweep.py`, `llmsim serve --concurrency 1,4,16` / `--rate 1,2,4`): each
point is exactly the standalone run at its level, the SLO answer is the highest level that meets
the attainment target, and bad level lists are clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmsim.cli import main
from llmsim.errors import LlmsimError
from llmsim.serving.metrics import SLO
from llmsim.serving.simulate import Deployment, Pool, simulate
from llmsim.serving.sweep import SweepResult, parse_loads, sweep
from llmsim.serving.workload import make_workload

MODEL = "llama-3.1-8b"
WALL = ("simulation_wall_s",)  # the only summary entries that depend on the machine, not the inputs


def dep(**kw) -> Deployment:
    kw.setdefault("kernels", "none")
    return Deployment(MODEL, Pool("h100-sxm"), **kw)


def closed(c: int):
    return make_workload(num_requests=120, concurrency=c, isl=1024, osl=64, seed=3, client_jitter_s=0.002)


def same(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k not in WALL} == {k: v for k, v in b.items() if k not in WALL}


def test_each_point_is_the_standalone_run_at_its_level():
    res = sweep(dep(), "concurrency", [16, 1, 4], closed)
    assert [p.load for p in res.points] == [1, 4, 16]  # ascending whatever the order given
    for p in res.points:
        alone = simulate(dep(), closed(p.load)).summary
        assert same(p.result.summary, alone)
    s = res.summary()
    assert s["sweep_by"] == "concurrency" and [p["concurrency"] for p in s["points"]] == [1, 4, 16]
    assert "max_load_meeting_slo" not in s  # no SLO given
    # more clients, more requests served per second (one H100 is far from saturated at c = 1)
    rps = [p["requests_per_s"] for p in s["points"]]
    assert rps[0] < rps[1] < rps[2]


def test_rate_sweep_points_and_determinism():
    def wl(r: float):
        return make_workload(num_requests=150, rate=r, isl=512, osl=32, seed=5)

    a = sweep(dep(), "rate", [2.0, 8.0], wl)
    b = sweep(dep(), "rate", [8.0, 2.0], wl)
    for pa, pb in zip(a.points, b.points):
        assert pa.load == pb.load and same(pa.result.summary, pb.result.summary)
        assert same(pa.result.summary, simulate(dep(), wl(pa.load)).summary)
    assert [p["rate_per_s"] for p in a.summary()["points"]] == [2.0, 8.0]


def test_max_load_meeting_slo_is_the_highest_level_meeting_the_target():
    slo = SLO(ttft_ms=150.0, tpot_ms=12.0)
    res = sweep(dep(), "concurrency", [1, 8, 32, 64], closed, slo=slo, attainment_target=0.9)
    att = {p.load: p.result.summary["slo_attainment"] for p in res.points}
    # the run spans both sides of the targets, so the answer is informative, not an end point by default
    assert att[1] >= 0.9 and att[64] < 0.9
    want = max(c for c, a in att.items() if a >= 0.9)
    assert res.max_load_meeting_slo() == want
    s = res.summary()
    assert s["max_load_meeting_slo"] == want and s["slo"] == {"ttft_ms": 150.0, "tpot_ms": 12.0, "attainment_target": 0.9}
    # a target no level reaches: None, not the lowest level
    strict = sweep(dep(), "concurrency", [32, 64], closed, slo=SLO(ttft_ms=1.0))
    assert strict.max_load_meeting_slo() is None and strict.summary()["max_load_meeting_slo"] is None
    # the attainment target moves the answer: with 1% of requests needed, every level counts
    loose = SweepResult("concurrency", res.points, slo, 0.01)
    assert loose.max_load_meeting_slo() == max(c for c, a in att.items() if a >= 0.01)


def test_per_request_rows_carry_their_level():
    res = sweep(dep(), "concurrency", [2, 6], closed)
    t = res.per_request()
    assert list(t)[0] == "concurrency"
    alone = [simulate(dep(), closed(c)).per_request() for c in (2, 6)]
    assert len(t["concurrency"]) == sum(len(a["ttft_ms"]) for a in alone)
    for c, a in zip((2, 6), alone):
        rows = t["concurrency"] == c
        assert rows.sum() == len(a["ttft_ms"])
        np.testing.assert_array_equal(t["ttft_ms"][rows], a["ttft_ms"])
        np.testing.assert_array_equal(t["request_id"][rows], a["request_id"])


@pytest.mark.parametrize("text, by, msg", [
    ("", "concurrency", "--concurrency needs a value"),
    ("1,,4", "concurrency", "has an empty entry"),
    ("4,x", "concurrency", "--concurrency must be an integer >= 1, got 'x'"),
    ("2.5", "concurrency", "--concurrency must be an integer >= 1, got '2.5'"),
    ("0,4", "concurrency", "--concurrency must be an integer >= 1, got 0"),
    ("4,1,4", "concurrency", "--concurrency lists 4 more than once"),
    ("1,-2", "rate", "--rate must be a positive number of requests per second, got -2"),
    ("nan", "rate", "got nan"),
    ("inf", "rate", "got inf"),
    ("a", "rate", "--rate must be a number, got 'a'"),
    (",".join(str(i) for i in range(1, 70)), "concurrency", "a sweep takes at most 64"),
])
def test_bad_levels_are_clear_errors(text, by, msg):
    with pytest.raises(LlmsimError) as e:
        parse_loads(text, by)
    assert msg in e.value.message and e.value.hint


def test_parse_loads_reads_one_level_or_several():
    assert parse_loads("64", "concurrency") == [64]
    assert parse_loads(" 16, 1,4 ", "concurrency") == [1, 4, 16]
    assert parse_loads("0.5,2,1e1", "rate") == [0.5, 2.0, 10.0]


def test_bad_sweep_arguments_are_clear_errors():
    with pytest.raises(LlmsimError, match="over 'concurrency' or 'rate'"):
        sweep(dep(), "tp", [1, 2], closed)
    with pytest.raises(LlmsimError, match="non-empty list"):
        sweep(dep(), "concurrency", [], closed)
    with pytest.raises(LlmsimError, match="not a valid concurrency"):
        sweep(dep(), "concurrency", [1, 2.5], closed)
    with pytest.raises(LlmsimError, match="attainment_target"):
        sweep(dep(), "concurrency", [1], closed, attainment_target=0.0)
    with pytest.raises(LlmsimError, match="not a Workload"):
        sweep(dep(), "concurrency", [1], lambda c: None)


def run_json(capsys, *argv) -> dict:
    main(["serve", "--model", MODEL, "--kernels", "none", *argv, "--json"])
    return json.loads(capsys.readouterr().out)


def test_cli_sweep_points_equal_single_runs(capsys, tmp_path):
    common = ["--num-requests", "80", "--isl", "512", "--osl", "16"]
    s = run_json(capsys, "--concurrency", "8,2", "--ttft-slo", "80", *common)
    assert [p["concurrency"] for p in s["points"]] == [2, 8]
    for p in s["points"]:
        alone = run_json(capsys, "--concurrency", str(p["concurrency"]), "--ttft-slo", "80", *common)
        assert same({k: v for k, v in p.items() if k != "concurrency"}, alone)
    assert s["max_load_meeting_slo"] in (None, 2, 8) and s["slo"]["attainment_target"] == 0.9
    # one level is the ordinary run, whose JSON contract has no sweep keys
    one = run_json(capsys, "--concurrency", "2", *common)
    assert "points" not in one and "ttft_ms" in one
    # per-request rows of a sweep: the level first
    out = tmp_path / "sweep.csv"
    main(["serve", "--model", MODEL, "--kernels", "none", "--rate", "1,3", *common, "-o", str(out)])
    capsys.readouterr()
    import pyarrow.csv as pcsv

    t = pcsv.read_csv(out).to_pydict()
    assert list(t)[0] == "rate_per_s" and sorted(set(t["rate_per_s"])) == [1.0, 3.0] and len(t["rate_per_s"]) == 160


@pytest.mark.parametrize("argv, msg", [
    (["--concurrency", "2", "--slo-attainment", "0.9", "--ttft-slo", "100"], "--slo-attainment applies to a sweep"),
    (["--concurrency", "2,4", "--slo-attainment", "0.9"], "--slo-attainment needs a latency target"),
    (["--concurrency", "2,4", "--slo-attainment", "1.5", "--ttft-slo", "100"], "--slo-attainment must be in (0, 1]"),
    (["--concurrency", "2,4", "--rate", "1,2"], "--concurrency and --rate both list several levels"),
    (["--concurrency", "2,4", "--rate", "1"], "give exactly one of --rate"),
])
def test_cli_sweep_bad_input(capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--model", MODEL, "--kernels", "none", "--num-requests", "8", "--isl", "64", "--osl", "4", *argv])
    assert e.value.code != 0
    assert msg in " ".join(capsys.readouterr().err.split())


def test_cli_sweep_table(capsys):
    main(["serve", "--model", MODEL, "--kernels", "none", "--concurrency", "1,16", "--num-requests", "64", "--isl", "512",
          "--osl", "16", "--ttft-slo", "60", "--tpot-slo", "20"])
    text = " ".join(capsys.readouterr().out.split())
    assert "concurrency sweep, 2 levels" in text and "clients" in text and "goodput" in text
    assert "highest level with >= 90% of requests meeting TTFT <= 60 ms and TPOT <= 20 ms:" in text


def test_cli_rounds_scale_requests_with_the_concurrency(capsys):
    s = run_json(capsys, "--concurrency", "4,16", "--rounds", "10", "--warmup-rounds", "2", "--isl", "256", "--osl", "8")
    got = [(p["concurrency"], p["num_completed"], p["num_warmup"], p["num_requests"]) for p in s["points"]]
    assert got == [(4, 40, 8, 32), (16, 160, 32, 128)]  # R x c simulated, the first W x c left out
    # the same as spelling the counts out for one level
    alone = run_json(capsys, "--concurrency", "16", "--num-requests", "160", "--warmup", "32", "--isl", "256", "--osl", "8")
    assert same({k: v for k, v in s["points"][1].items() if k != "concurrency"}, alone)


@pytest.mark.parametrize("argv, msg", [
    (["--rate", "2", "--rounds", "3"], "need a closed loop (--concurrency)"),
    (["--concurrency", "4", "--rounds", "3", "--num-requests", "9"], "give --num-requests or --rounds, not both"),
    (["--concurrency", "4", "--rounds", "3", "--warmup-rounds", "1", "--warmup", "3"], "give --warmup or --warmup-rounds, not both"),
    (["--concurrency", "4", "--rounds", "0"], "--rounds must be >= 1, got 0"),
    (["--concurrency", "4", "--rounds", "2", "--warmup-rounds", "2"], "--warmup-rounds must be in [0, 2) (below --rounds), got 2"),
    (["--concurrency", "4", "--num-requests", "8", "--warmup-rounds", "-1"], "--warmup-rounds must be >= 0, got -1"),
    # a level whose workload cannot be built is named, before any level is simulated
    (["--concurrency", "4,8", "--num-requests", "12", "--warmup-rounds", "2"],
     "(at --concurrency 8; --rounds / --warmup-rounds make 12 requests, 16 of them warm-up)"),
])
def test_cli_rounds_bad_input(capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--model", MODEL, "--kernels", "none", "--isl", "64", "--osl", "4", *argv])
    assert e.value.code != 0
    assert msg in " ".join(capsys.readouterr().err.split())
