"""The GPU catalog, name lookup, user-defined GPU files and their error messages."""

from __future__ import annotations

import json

import pytest
import yaml

from llmsim.errors import LlmsimError
from llmsim.hardware import Efficiency, GPUSpec, get_gpu, list_gpus, load_gpu_file
from llmsim.hardware import catalog as catalog_mod

REQUIRED = {
    "a100-sxm-80gb": ["a100", "a100-80gb", "a100-sxm"],
    "h100-sxm": ["h100", "h100-sxm5", "h100-80gb"],
    "h100-pcie": [],
    "h200-sxm": ["h200"],
    "b200": [],
    "gb200": [],
    "b300": ["b300-sxm"],
    "gb300": [],
    "mi300x": [],
    "l40s": [],
    "l4": [],
    "rtx-4090": ["4090"],
}
BLACKWELL = {"b200", "gb200", "b300", "gb300"}
# names as they appear in the shared silicon / aiconfigurator data
SHARED_SYSTEM_NAMES = {
    "h100_sxm": "h100-sxm",
    "b200_sxm": "b200",
    "b300_sxm": "b300",
    "gb200": "gb200",
    "gb200_sxm": "gb200",
    "gb300": "gb300",
    "h200_sxm": "h200-sxm",
    "a100_sxm": "a100-sxm-80gb",
}


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# --------------------------------------------------------------------------- catalog contents


@pytest.mark.parametrize("gpu_id", sorted(REQUIRED))
def test_every_required_id_and_alias_resolves(gpu_id):
    assert get_gpu(gpu_id).name == gpu_id
    for alias in REQUIRED[gpu_id]:
        assert get_gpu(alias).name == gpu_id
        assert get_gpu(alias.upper()).name == gpu_id
        assert get_gpu(alias.replace("-", "_")).name == gpu_id


@pytest.mark.parametrize("name,gpu_id", sorted(SHARED_SYSTEM_NAMES.items()))
def test_underscore_system_names_resolve(name, gpu_id):
    assert get_gpu(name).name == gpu_id


def test_spaces_case_and_vendor_prefix():
    assert get_gpu("  H100 SXM ").name == "h100-sxm"
    assert get_gpu("NVIDIA-H100").name == "h100-sxm"
    assert get_gpu("amd_mi300x").name == "mi300x"
    assert get_gpu("RTX 4090").name == "rtx-4090"


def test_catalog_ids_and_aliases_are_unique_and_complete():
    gpus = list_gpus()
    ids = [g.name for g in gpus]
    assert set(REQUIRED) <= set(ids)
    assert len(ids) == len(set(ids))
    seen: dict[str, str] = {}
    for g in gpus:
        for n in (g.name, *g.aliases):
            k = catalog_mod._key(n)
            assert k not in seen, f"{n} used by {seen.get(k)} and {g.name}"
            seen[k] = g.name


@pytest.mark.parametrize("gpu", list_gpus(), ids=lambda g: g.name)
def test_every_entry_is_complete_and_plausible(gpu: GPUSpec):
    assert gpu.source and len(gpu.source) > 40, "every entry names its spec sheets"
    assert gpu.display_name
    assert gpu.name == gpu.name.lower()
    assert gpu.vendor in ("nvidia", "amd")
    for d in ("bf16", "fp16", "fp32", "int8"):
        assert gpu.peak_tflops.get(d, 0) > 0, d
    bf16 = gpu.peak_tflops["bf16"]
    # dense, not sparse: fp8 is 2x bf16 (never 4x), fp32 CUDA-core rate far below bf16
    if "fp8" in gpu.peak_tflops:
        # (L40S datasheet: 733 vs 2 x 362.05, hence 2 %)
        assert gpu.peak_tflops["fp8"] == pytest.approx(2 * bf16, rel=0.02)
    assert gpu.peak_tflops["fp32"] < bf16
    if "fp4" in gpu.peak_tflops:
        # 2x fp8 on Blackwell, 3x on Blackwell Ultra (B300/GB300)
        assert 2 * gpu.peak_tflops["fp8"] <= gpu.peak_tflops["fp4"] <= 3.2 * gpu.peak_tflops["fp8"]
    assert 10 < gpu.memory_gib < 300
    assert 200 <= gpu.memory_bandwidth_gbps <= 10_000
    assert 0 < gpu.idle_power_w < gpu.tdp_w
    assert 0 < gpu.price_per_hour_usd < 20
    assert gpu.nvlink_domain_size == 1 or gpu.nvlink_bandwidth_gbps > 0
    assert gpu.nvlink_bandwidth_gbps == 0 or gpu.nvlink_bandwidth_gbps > gpu.pcie_bandwidth_gbps
    assert gpu.nic_bandwidth_gbps <= max(gpu.pcie_bandwidth_gbps, 100)
    if gpu.name in _FITTED_EFFICIENCY:  # fitted on the shared serving rows (gpus.yaml header)
        fitted = {k: v for k, v in gpu.efficiency.model_dump().items() if v != getattr(Efficiency(), k)}
        assert fitted == _FITTED_EFFICIENCY[gpu.name]
    else:
        assert gpu.efficiency == Efficiency()  # uncalibrated chips inherit the defaults


# HGX Blackwell: H100's bandwidth fraction -> 0.9, the GEMM / FMHA peak fractions x 0.85
_HGX_BLACKWELL = {"mem_bw_fraction": 0.9, "gemm_peak_fraction": 0.7565, "gemm_lowp_peak_fraction": 0.51595,
                  "gemm_block_fp8_peak_fraction": 0.43435, "attn_peak_fraction": 0.78625, "attn_lowp_peak_fraction": 0.5202}
# every chip with fp4 tensor cores: the NVFP4 / MXFP4 GEMM stream (gpus.yaml header, fitted 2026-11-23)
_FP4 = {"gemm_fp4_bw_fraction": 0.8}
_FITTED_EFFICIENCY = {"b200": {**_HGX_BLACKWELL, **_FP4}, "b300": {**_HGX_BLACKWELL, **_FP4}, "gb200": _FP4, "gb300": _FP4}


def test_fp4_stream_fraction_only_where_fp4_runs():
    """gemm_fp4_bw_fraction is set on exactly the chips with fp4 tensor cores, and slows an fp4
    GEMM's weight-bound (decode) stream by that factor while leaving its compute-bound time alone."""
    from llmsim.cost import roofline as rf

    for g in list_gpus():
        assert (g.efficiency.gemm_fp4_bw_fraction < 1.0) == g.supports("fp4"), g.name
    b = get_gpu("b200")
    e1 = b.efficiency.model_copy(update={"gemm_fp4_bw_fraction": 1.0})
    args = (8192.0, 8192.0, b.peak_flops_per_s("fp4"), b.memory_bandwidth_bytes_per_s)
    small = lambda e: rf.gemm_time_s(4.0, *args[:2], 8192 * 8192 * 0.5625, *args[2:], e, b.num_sms, "fp4") - e.gemm_launch_s - e.gemm_lowp_launch_s
    assert small(b.efficiency) == pytest.approx(small(e1) / 0.8, rel=0.02)
    big = lambda e: rf.gemm_time_s(16384.0, *args[:2], 8192 * 8192 * 0.5625 + 16384 * 8192 * 3.0, *args[2:], e, b.num_sms, "fp4")
    assert big(b.efficiency) == pytest.approx(big(e1), rel=1e-9)


def test_hgx_blackwell_efficiency_is_h100s_scaled():
    """The fitted HGX Blackwell values are H100's compute fractions x 0.85 (not free per field)."""
    d = Efficiency()
    for f in ("gemm_peak_fraction", "gemm_lowp_peak_fraction", "gemm_block_fp8_peak_fraction", "attn_peak_fraction", "attn_lowp_peak_fraction"):
        assert _HGX_BLACKWELL[f] == pytest.approx(0.85 * getattr(d, f), rel=1e-12), f


def test_fp8_presence():
    for g in list_gpus():
        assert g.supports("fp8") == (g.name != "a100-sxm-80gb"), g.name


def test_fp4_only_on_blackwell():
    have = {g.name for g in list_gpus() if g.supports("fp4")}
    assert have == BLACKWELL
    assert get_gpu("b200").peak_flops_per_s("nvfp4") == pytest.approx(9000e12)


def test_fp4_on_a100_raises_clear_error():
    with pytest.raises(LlmsimError) as ei:
        get_gpu("a100").peak_flops_per_s("fp4")
    assert "fp4" in str(ei.value)
    assert "a100-sxm-80gb" in str(ei.value)


def test_h100_sxm_matches_datasheet():
    h = get_gpu("h100")
    assert h.peak_flops_per_s("bf16") == pytest.approx(989.4e12)
    assert h.peak_flops_per_s("fp16") == pytest.approx(989.4e12)
    assert h.peak_flops_per_s("fp8") == pytest.approx(1978.9e12)
    assert h.peak_tflops["int8"] == pytest.approx(1978.9)
    assert h.memory_bandwidth_bytes_per_s == pytest.approx(3.35e12)
    # "80 GB" is what nvidia-smi reports as 81,559 MiB
    assert h.memory_bytes == pytest.approx(81559 * 2**20, rel=1e-4)
    assert h.num_sms == 132
    assert h.tdp_w == 700
    assert h.nvlink_bandwidth_gbps == 450  # NVLink 4: 900 GB/s bidirectional
    assert h.pcie_bandwidth_gbps == 64
    assert h.nic_bandwidth_gbps == 50  # ConnectX-7 400 Gb/s


def test_a_few_other_anchor_numbers():
    assert get_gpu("a100").peak_tflops["bf16"] == 312
    assert get_gpu("a100").memory_gib == 80
    assert get_gpu("h200").memory_bandwidth_gbps == 4800
    assert get_gpu("h200").peak_tflops["bf16"] == get_gpu("h100").peak_tflops["bf16"]
    assert get_gpu("gb200").peak_tflops["fp4"] == 10_000
    assert get_gpu("mi300x").vendor == "amd"
    assert get_gpu("mi300x").peak_tflops["bf16"] == pytest.approx(1307.4)
    assert get_gpu("l40s").peak_tflops["fp8"] == 733
    assert get_gpu("4090").peak_tflops["bf16"] == pytest.approx(165.2)


# --------------------------------------------------------------------------- link tiers


def test_link_tiers():
    h = get_gpu("h100-sxm")
    bw, lat, tier = h.link(8)
    assert tier == "nvlink" and bw == pytest.approx(450e9) and lat > 0
    assert h.link(2)[2] == "nvlink"
    bw16, lat16, tier16 = h.link(16)
    assert tier16 == "network" and bw16 == pytest.approx(50e9) and lat16 > lat
    assert get_gpu("l40s").link(8)[2] == "pcie"
    assert get_gpu("l40s").link(2)[2] == "pcie"
    assert get_gpu("l40s").link(16)[2] == "network"
    assert get_gpu("h100-pcie").link(2)[2] == "pcie"
    gb = get_gpu("gb200")
    assert gb.gpus_per_node == 4
    assert gb.link(72)[2] == "nvlink"
    assert gb.link(8)[2] == "nvlink"
    assert gb.link(144)[2] == "network"
    assert get_gpu("gb300").link(72)[2] == "nvlink"
    assert get_gpu("mi300x").link(8)[2] == "nvlink"  # Infinity Fabric
    assert get_gpu("b300").link(16)[2] == "network"


# --------------------------------------------------------------------------- overrides


def test_price_override_does_not_touch_catalog():
    cheap = get_gpu("h100", price_per_hour_usd=1.25)
    assert cheap.price_per_hour_usd == 1.25
    assert get_gpu("h100").price_per_hour_usd != 1.25
    assert get_gpu("h100", price_per_hour_usd=0).price_per_hour_usd == 0


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "cheap"])
def test_bad_price_is_rejected(bad):
    with pytest.raises(LlmsimError, match="price"):
        get_gpu("h100", price_per_hour_usd=bad)


def test_returned_specs_are_independent_copies():
    g = get_gpu("h100")
    g.peak_tflops["bf16"] = 1.0
    list_gpus()[0].peak_tflops["bf16"] = 1.0
    assert get_gpu("h100").peak_tflops["bf16"] == pytest.approx(989.4)
    assert get_gpu("a100").peak_tflops["bf16"] == 312


def test_catalog_is_loaded_once():
    catalog_mod._catalog.cache_clear()
    get_gpu("h100")
    get_gpu("b200")
    list_gpus()
    info = catalog_mod._catalog.cache_info()
    assert info.misses == 1 and info.hits >= 2


def test_gpuspec_passes_through():
    g = get_gpu("l4")
    assert get_gpu(g) == g
    assert get_gpu(g, price_per_hour_usd=0.5).price_per_hour_usd == 0.5


# --------------------------------------------------------------------------- unknown names


def test_unknown_gpu_suggests_close_names():
    with pytest.raises(LlmsimError) as ei:
        get_gpu("h100-sxm4")
    e = ei.value
    assert "unknown GPU 'h100-sxm4'" in e.message
    assert "h100-sxm" in e.hint and "did you mean" in e.hint
    assert "llmsim gpus list" in e.hint and "YAML/JSON" in e.hint
    with pytest.raises(LlmsimError) as ei:
        get_gpu("b20")
    assert "b200" in ei.value.hint


def test_unknown_gpu_without_close_names_still_helps():
    with pytest.raises(LlmsimError) as ei:
        get_gpu("tpu-v5p")
    assert "llmsim gpus list" in ei.value.hint


def test_missing_file_path_says_not_found(tmp_path):
    with pytest.raises(LlmsimError, match="not found"):
        get_gpu(str(tmp_path / "nope.yaml"))
    with pytest.raises(LlmsimError, match="not found"):
        load_gpu_file(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- user files


def test_base_plus_override_doubles_bandwidth(tmp_path):
    p = write(
        tmp_path,
        "fast.yaml",
        "base: h100-sxm\nname: h100-2xbw\nmemory_bandwidth_gbps: 6700\nefficiency:\n  mem_bw_fraction: 0.9\n",
    )
    g = get_gpu(str(p))
    h = get_gpu("h100-sxm")
    assert g.name == "h100-2xbw"
    assert g.memory_bandwidth_gbps == 2 * h.memory_bandwidth_gbps
    assert g.peak_tflops == h.peak_tflops
    assert g.memory_gib == h.memory_gib and g.nvlink_bandwidth_gbps == h.nvlink_bandwidth_gbps
    # efficiency merged: one field changed, the rest inherited from the base
    assert g.efficiency.mem_bw_fraction == 0.9
    assert g.efficiency.gemm_peak_fraction == h.efficiency.gemm_peak_fraction
    # identity is not inherited
    assert g.aliases == () and "h100-sxm" in g.source
    assert get_gpu("h100").name == "h100-sxm"
    # price override works on files too
    assert get_gpu(p, price_per_hour_usd=9.0).price_per_hour_usd == 9.0


def test_base_peak_tflops_merge_and_removal(tmp_path):
    p = write(tmp_path, "h100fp4.yml", "base: H100_SXM\npeak_tflops: {nvfp4: 3957.8, int8: null, bfloat16: 1000}\n")
    g = load_gpu_file(p)
    assert g.name == "h100fp4"  # defaults to the file stem
    assert g.peak_tflops["fp4"] == pytest.approx(3957.8)
    assert g.peak_tflops["bf16"] == 1000
    assert g.peak_tflops["fp8"] == pytest.approx(1978.9)
    assert "int8" not in g.peak_tflops


def test_base_can_be_another_file(tmp_path):
    write(tmp_path, "a.yaml", "base: b200\nname: b200-lowpower\ntdp_w: 700\n")
    b = write(tmp_path, "b.yaml", "base: a.yaml\nname: b200-lowpower-cheap\nprice_per_hour_usd: 3\n")
    g = load_gpu_file(b)
    assert (g.tdp_w, g.price_per_hour_usd, g.peak_tflops["fp4"]) == (700, 3, 9000)


def test_base_loop_is_reported(tmp_path):
    write(tmp_path, "x.yaml", "base: y.yaml\n")
    y = write(tmp_path, "y.yaml", "base: x.yaml\n")
    with pytest.raises(LlmsimError, match="loops"):
        load_gpu_file(y)


def test_unknown_base_suggests(tmp_path):
    p = write(tmp_path, "c.yaml", "base: h100-sxn\n")
    with pytest.raises(LlmsimError) as ei:
        load_gpu_file(p)
    assert "c.yaml" in ei.value.message and "h100-sxn" in ei.value.message
    assert "h100-sxm" in ei.value.hint


FULL_SPEC = {
    "name": "my-npu",
    "display_name": "Hypothetical NPU",
    "vendor": "acme",
    "source": "made up for a test",
    "peak_tflops": {"bf16": 500, "fp8": 1000, "fp32": 50},
    "memory_gib": 96,
    "memory_bandwidth_gbps": 4000,
    "num_sms": 100,
    "tdp_w": 500,
    "idle_power_w": 60,
    "price_per_hour_usd": 1.0,
    "gpus_per_node": 4,
    "nvlink_domain_size": 4,
    "nvlink_bandwidth_gbps": 200,
    "pcie_bandwidth_gbps": 32,
    "nic_bandwidth_gbps": 25,
}


def test_full_custom_spec_json_and_yaml(tmp_path):
    pj = write(tmp_path, "npu.json", json.dumps(FULL_SPEC))
    g = get_gpu(str(pj))
    assert g.name == "my-npu" and g.vendor == "acme"
    assert g.peak_flops_per_s("fp16") == pytest.approx(500e12)  # fp16 filled from bf16
    assert g.memory_bytes == 96 * 2**30
    assert g.link(4)[2] == "nvlink" and g.link(8)[2] == "network"
    assert g.efficiency == Efficiency()
    py = write(tmp_path, "npu.yaml", yaml.safe_dump(FULL_SPEC))
    assert load_gpu_file(py) == g


def _error_for(tmp_path, text, name="bad.yaml") -> LlmsimError:
    p = write(tmp_path, name, text)
    with pytest.raises(LlmsimError) as ei:
        get_gpu(str(p))
    msg = str(ei.value)
    assert name in msg
    for raw in ("Traceback", "pydantic", "validation error for", "errors.pydantic.dev"):
        assert raw not in msg
    return ei.value


def test_bad_file_missing_field(tmp_path):
    spec = {k: v for k, v in FULL_SPEC.items() if k != "memory_bandwidth_gbps"}
    e = _error_for(tmp_path, json.dumps(spec), "missing.json")
    assert "memory_bandwidth_gbps" in e.message and "missing" in e.message


def test_bad_file_negative_bandwidth(tmp_path):
    e = _error_for(tmp_path, "base: h100-sxm\nmemory_bandwidth_gbps: -3350\n")
    assert "memory_bandwidth_gbps" in e.message
    assert "must be at least 1" in e.message and "-3350" in e.message


@pytest.mark.parametrize("text, field", [("memory_bandwidth_gbps: 1.0e-320", "memory_bandwidth_gbps"),
                                         ("peak_tflops: {bf16: 1.0e-320}", "bf16")])
def test_bad_file_vanishing_rates(tmp_path, text, field):
    # positive but denormal rates passed the > 0 check and ended in a NaN deep in the engine
    e = _error_for(tmp_path, f"base: h100-sxm\n{text}\n")
    assert field in e.message and "at least" in e.message


def test_bad_file_unknown_field(tmp_path):
    e = _error_for(tmp_path, "base: h100-sxm\nmemory_bandwidth: 6700\n")
    assert "'memory_bandwidth' is not a known field" in e.message
    assert "memory_bandwidth_gbps" in e.message  # suggestion
    assert e.hint


def test_bad_file_unknown_efficiency_field_and_out_of_range(tmp_path):
    e = _error_for(tmp_path, "base: h100-sxm\nefficiency: {gemm_peak_fracton: 0.5, mem_bw_fraction: 1.5}\n")
    assert "efficiency.gemm_peak_fracton" in e.message and "gemm_peak_fraction" in e.message
    assert "efficiency.mem_bw_fraction" in e.message and "at most 1" in e.message


def test_bad_file_wrong_types_and_dtype(tmp_path):
    e = _error_for(tmp_path, "base: h100-sxm\nnum_sms: lots\n")
    assert "num_sms" in e.message and "whole number" in e.message
    e = _error_for(tmp_path, "base: h100-sxm\npeak_tflops: {fp7: 10}\n")
    assert "peak_tflops" in e.message and "fp7" in e.message
    e = _error_for(tmp_path, json.dumps({**FULL_SPEC, "peak_tflops": {"fp8": 10}}), "nobf16.json")
    assert "bf16" in e.message


def test_bad_file_syntax_and_shape(tmp_path):
    e = _error_for(tmp_path, "base: h100-sxm\n  memory_gib: [1, 2\n", "broken.yaml")
    assert "not valid YAML" in e.message
    e = _error_for(tmp_path, "{not json", "broken.json")
    assert "not valid JSON" in e.message
    e = _error_for(tmp_path, "- just\n- a list\n", "list.yaml")
    assert "mapping" in e.message
    e = _error_for(tmp_path, "base: 42\n", "base42.yaml")
    assert "base" in e.message


@pytest.mark.parametrize(
    "override,field,value",
    [
        ("peak_tflops: {bf16: -100}", "peak_tflops", "-100"),
        ("peak_tflops: {bf16: -5}", "peak_tflops", "-5"),  # base + a negative override (MFU -10.4)
        ("peak_tflops: {fp8: 0}", "peak_tflops", "0"),  # ZeroDivisionError in cost/model.py
        ("peak_tflops: {bf16: .nan}", "peak_tflops.bf16", "nan"),
        ("peak_tflops: {bf16: .inf}", "peak_tflops.bf16", "inf"),
        ("memory_gib: .inf", "memory_gib", "inf"),
        ("memory_bandwidth_gbps: .inf", "memory_bandwidth_gbps", "inf"),
        ("tdp_w: .inf", "tdp_w", "inf"),
        ("price_per_hour_usd: .inf", "price_per_hour_usd", "inf"),
        ("nvlink_bandwidth_gbps: .inf", "nvlink_bandwidth_gbps", "inf"),
        ("nvlink_latency_us: .inf", "nvlink_latency_us", "inf"),
        ("pcie_latency_us: .inf", "pcie_latency_us", "inf"),
        ("nic_bandwidth_gbps: .inf", "nic_bandwidth_gbps", "inf"),
        ("efficiency: {gemm_launch_s: .inf}", "efficiency.gemm_launch_s", "inf"),
        ("efficiency: {collective_latency_scale: .inf}", "efficiency.collective_latency_scale", "inf"),
        ("efficiency: {collective_ramp_half_bytes: .inf}", "efficiency.collective_ramp_half_bytes", "inf"),
        ("efficiency: {mem_half_saturation_bytes: .inf}", "efficiency.mem_half_saturation_bytes", "inf"),
        ("idle_power_w: 800", "idle_power_w", "800"),  # above the base's 700 W TDP
        ("tdp_w: 50", "idle_power_w", "70"),  # a TDP below the base's 70 W idle power
    ],
)
def test_bad_file_out_of_range_values_are_rejected(tmp_path, override, field, value):
    """Non-finite floats, peaks <= 0 and idle power above TDP: a clear error naming the field and
    value, also when the bad value overrides a catalog base."""
    e = _error_for(tmp_path, f"base: h100-sxm\n{override}\n")
    assert f"'{field}'" in e.message and value in e.message


@pytest.mark.parametrize("peak", [-100.0, 0.0, float("nan"), float("inf")])
def test_bad_peak_tflops_in_full_json_spec(tmp_path, peak):
    """A stand-alone JSON spec (no base): a bad bf16 peak names peak_tflops."""
    text = json.dumps({**FULL_SPEC, "peak_tflops": {"bf16": peak, "fp8": 1000}})  # NaN / Infinity tokens
    e = _error_for(tmp_path, text, "npu.json")
    assert "peak_tflops" in e.message and "bf16" in e.message


def test_gpuspec_rejects_bad_values_directly():
    """Built in Python (not from a file), GPUSpec / Efficiency raise pydantic's ValidationError;
    `with_overrides` an LlmsimError naming the field."""
    from pydantic import ValidationError

    base = {k: v for k, v in FULL_SPEC.items()}
    with pytest.raises(ValidationError, match="peak_tflops"):
        GPUSpec.model_validate({**base, "peak_tflops": {"bf16": -1}})
    with pytest.raises(ValidationError, match="idle_power_w"):
        GPUSpec.model_validate({**base, "idle_power_w": 501})
    with pytest.raises(ValidationError, match="gemm_launch_s"):
        Efficiency(gemm_launch_s=float("inf"))
    with pytest.raises(LlmsimError, match="peak_tflops"):  # with_overrides reports as a GPU file's fields do
        get_gpu("h100-sxm").with_overrides(peak_tflops={"bf16": 0})


def test_gpus_show_json_round_trips_as_a_gpu_file(tmp_path, capsys):
    # `llmsim gpus show --json` adds derived keys (memory_bytes, memory_bandwidth_bytes_per_s);
    # the file it writes loads back as the same GPU, and a derived key that disagrees with its
    # field is an error naming both
    from llmsim.cli import main

    main(["gpus", "show", "h100-sxm", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert "memory_bytes" in d
    f = tmp_path / "mine.json"
    f.write_text(json.dumps(d))
    assert load_gpu_file(f) == get_gpu("h100-sxm")
    d["memory_gib"] = 40.0
    f.write_text(json.dumps(d))
    with pytest.raises(LlmsimError, match="memory_bytes .* disagrees with memory_gib") as e:
        load_gpu_file(f)
    assert "drop memory_bytes" in e.value.hint


def test_gpu_and_kernel_paths_of_the_wrong_kind_say_so(tmp_path):
    from llmsim.estimate import resolve_kernels

    with pytest.raises(LlmsimError, match="is a directory, not a GPU file"):
        get_gpu(str(tmp_path))
    txt = tmp_path / "gpu.txt"
    txt.write_text("x")
    with pytest.raises(LlmsimError, match="must end in .yaml"):
        get_gpu(str(txt))
    with pytest.raises(LlmsimError, match="is a file; --kernels takes a directory"):
        resolve_kernels(str(txt), get_gpu("h100-sxm"))


def test_bundled_tables_only_for_the_chip_they_were_measured_on(tmp_path):
    # --kernels auto picks the H100 tables by name; a file that keeps the name but edits the
    # silicon (peaks, bandwidth, SMs) is another chip, timed by the roofline from its numbers.
    # Price and power edits keep the tables.
    from llmsim.estimate import resolve_kernels

    base = get_gpu("h100-sxm").model_dump(mode="json")
    f = tmp_path / "h100.yaml"
    for edit, tables in (({"price_per_hour_usd": 9.0}, True), ({"tdp_w": 500}, True),
                         ({"peak_tflops": {**base["peak_tflops"], "fp8": 10.0}}, False), ({"memory_bandwidth_gbps": 2000.0}, False),
                         ({"num_sms": 66}, False)):
        f.write_text(yaml.safe_dump({**base, **edit}))
        g = load_gpu_file(f)
        assert g.name == "h100-sxm"
        assert (resolve_kernels("auto", g) is not None) is tables, edit


def test_a_calibrated_spec_keeps_the_tables_of_the_gpu_it_aliases(tmp_path):
    # `llmsim calibrate` on benchmarks writes '<gpu>-calibrated' with aliases [<gpu>] so that the
    # measured tables still time its kernels; 'auto' matched the name only and fell back to the roofline
    from llmsim.estimate import estimate, resolve_kernels

    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump({"base": "h100-sxm", "name": "h100-sxm-calibrated", "aliases": ["h100-sxm"]}))
    g = load_gpu_file(f)
    assert resolve_kernels("auto", g) is not None
    a = estimate("qwen3-32b", "h100-sxm", tp=2, batch=8)
    b = estimate("qwen3-32b", str(f), tp=2, batch=8)
    assert b.kernel_source == a.kernel_source == "measured+roofline" and b.tpot_ms == pytest.approx(a.tpot_ms)


def test_cli_weights_default_to_the_published_checkpoint_format_where_the_gpu_runs_it(capsys):
    # DeepSeek-V3's checkpoint is fp8: on 8x H200 it fits as published, where bf16 weights did not;
    # gpt-oss's MXFP4 runs as fp4 on Blackwell; a GPU without the format keeps bf16 and says why
    from llmsim.cli import main

    for args, w in ((["--model", "deepseek-v3", "--gpu", "h200", "--tp", "8"], "fp8"),
                    (["--model", "gpt-oss-120b", "--gpu", "b200"], "fp4"),
                    (["--model", "gpt-oss-120b", "--gpu", "h100"], "bf16"),
                    (["--model", "llama-3.1-8b", "--gpu", "h100"], "bf16"),
                    (["--model", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--weight-dtype", "bf16"], "bf16")):
        main(["estimate", *args, "--json"])
        d = json.loads(capsys.readouterr().out)
        assert d["weight_dtype"] == w, args
    main(["estimate", "--model", "deepseek-v3", "--gpu", "h200", "--tp", "8"])
    text = " ".join(capsys.readouterr().out.split())
    assert "published checkpoint" in text
    main(["serve", "--model", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--concurrency", "1", "--num-requests", "2",
          "--isl", "64", "--osl", "4", "--json"])
    assert json.loads(capsys.readouterr().out)["weight_dtype"] == "fp8"


@pytest.mark.parametrize("kw, needle", [
    (dict(memory_gib="x"), "'memory_gib' must be a finite number"),
    (dict(memory_gib=-1), "'memory_gib' must be at least 0.01"),
    (dict(memroy_gib=80), "'memroy_gib' is not a known field \\(did you mean 'memory_gib'\\?\\)"),
])
def test_with_overrides_reports_bad_fields_as_llmsim_errors(kw, needle):
    # pydantic's ValidationError used to escape
    with pytest.raises(LlmsimError, match=needle):
        get_gpu("h100-sxm").with_overrides(**kw)
    assert get_gpu("h100-sxm").with_overrides(memory_gib=96).memory_gib == 96
