"""The built-in GPU catalog and user-defined accelerators.

`get_gpu("h100")` looks a chip up by id or alias (case-insensitive, `_` or spaces
for `-`, an optional `nvidia-`/`amd-` prefix). `get_gpu("my_chip.yaml")` loads a
YAML/JSON file with GPUSpec fields instead; such a file may start from a catalog
chip and change a few numbers:

    base: h100-sxm
    name: h100-2xbw
    memory_bandwidth_gbps: 6700
    efficiency: {mem_bw_fraction: 0.9}   # merged into the base's efficiency
    peak_tflops: {fp4: 3957.8}           # merged into the base's peaks (null removes one)

Every problem with a name or a file is reported as an LlmsimError that says
which file and which field, in plain words.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..checks import is_number
from ..dtypes import canonical
from ..errors import LlmsimError
from .spec import Efficiency, GPUSpec

GPU_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_CATALOG_FILE = "gpus.yaml"
_VENDOR_PREFIXES = ("nvidia-", "amd-")
# mapping fields a file based on another GPU merges key by key instead of replacing
_MERGED_DICT_FIELDS = ("efficiency", "peak_tflops")


def _key(name: str) -> str:
    """Normalise a name for lookup: 'H100_SXM' / 'h100 sxm' -> 'h100-sxm'."""
    k = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    while "--" in k:
        k = k.replace("--", "-")
    return k


# --------------------------------------------------------------------------- catalog


@lru_cache(maxsize=1)
def _catalog() -> tuple[dict[str, GPUSpec], dict[str, str]]:
    """(specs by id in file order, lookup key -> id). Parsed and validated once."""
    src = resources.files("llmsim.hardware").joinpath("data", _CATALOG_FILE)
    where = f"built-in GPU catalog ({_CATALOG_FILE})"
    try:
        raw = yaml.safe_load(src.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:  # pragma: no cover - packaging error
        raise LlmsimError(f"cannot read the {where}: {e}", hint="reinstall llmsim") from None
    entries = raw.get("gpus") if isinstance(raw, dict) else None
    if not isinstance(entries, list):  # pragma: no cover - packaging error
        raise LlmsimError(f"the {where} has no 'gpus:' list", hint="reinstall llmsim")

    specs: dict[str, GPUSpec] = {}
    index: dict[str, str] = {}
    for entry in entries:
        spec = _validate(entry, where)
        for alias in (spec.name, *spec.aliases):
            k = _key(alias)
            if k in index:  # pragma: no cover - guarded by the catalog tests
                raise LlmsimError(f"the {where} uses the name '{alias}' twice ({index[k]}, {spec.name})")
            index[k] = spec.name
        specs[spec.name] = spec
    return specs, index


def list_gpus() -> list[GPUSpec]:
    """Every catalog GPU, in catalog order (copies: changing one changes nothing else)."""
    return [s.model_copy(deep=True) for s in _catalog()[0].values()]


def _lookup(name: str) -> GPUSpec | None:
    specs, index = _catalog()
    k = _key(name)
    candidates = [k] + [k[len(p):] for p in _VENDOR_PREFIXES if k.startswith(p)]
    for c in candidates:
        if c in index:
            return specs[index[c]]
    return None


def _suggest(name: str) -> list[str]:
    specs, index = _catalog()
    k = _key(name)
    for p in _VENDOR_PREFIXES:
        if k.startswith(p):
            k = k[len(p):]
    out: list[str] = []
    for match in difflib.get_close_matches(k, list(index), n=6, cutoff=0.6):
        if index[match] not in out:
            out.append(index[match])
    if len(k) >= 2:
        for key, gpu_id in index.items():
            if (k in key or key in k) and gpu_id not in out:
                out.append(gpu_id)
    return out[:4]


def _looks_like_path(s: str) -> bool:
    return s.lower().endswith(GPU_FILE_SUFFIXES) or os.sep in s or (os.altsep is not None and os.altsep in s)


def get_gpu(name_or_path: str | os.PathLike | GPUSpec, *, price_per_hour_usd: float | None = None) -> GPUSpec:
    """A GPU by catalog id/alias or from a YAML/JSON file, optionally with another $/GPU-hour.

    Raises LlmsimError with close catalog names when the name is unknown.
    """
    if isinstance(name_or_path, GPUSpec):
        spec = _fresh(name_or_path)
    elif not isinstance(name_or_path, (str, os.PathLike)):
        raise LlmsimError(f"a GPU is a catalog name, a YAML/JSON file path or a GPUSpec, got {name_or_path!r}"[:200],
                          hint="e.g. 'h100-sxm' (see `llmsim gpus list`)")
    else:
        s = os.fspath(name_or_path).strip()
        if not s:
            raise LlmsimError("no GPU given", hint="pass a catalog name such as h100-sxm (see `llmsim gpus list`) or a YAML/JSON file")
        p = Path(s).expanduser()
        if p.suffix.lower() in GPU_FILE_SUFFIXES and p.is_file():
            spec = load_gpu_file(p)
        else:
            found = _lookup(s)
            if found is not None:
                spec = _fresh(found)
            elif p.is_dir():
                raise LlmsimError(f"'{s}' is a directory, not a GPU file",
                                  hint="pass a YAML/JSON file describing one GPU, or a catalog name (run `llmsim gpus list`)")
            elif p.is_file():
                raise LlmsimError(f"GPU file '{s}' must end in {' or '.join(GPU_FILE_SUFFIXES)}",
                                  hint="rename it, or pass a catalog name (run `llmsim gpus list`)")
            elif _looks_like_path(s):
                raise LlmsimError(
                    f"GPU file '{s}' not found",
                    hint="check the path, or pass a catalog name (run `llmsim gpus list`)",
                )
            else:
                close = _suggest(s)
                did_you_mean = f"did you mean {', '.join(close)}? " if close else ""
                raise LlmsimError(
                    f"unknown GPU '{s}'",
                    hint=f"{did_you_mean}run `llmsim gpus list`, or pass a YAML/JSON file describing your GPU",
                )
    if price_per_hour_usd is not None:
        spec = _with_price(spec, price_per_hour_usd)
    return spec


def _fresh(spec: GPUSpec) -> GPUSpec:
    """A copy whose only mutable part (the peak_tflops dict) is new: frozen fields are shared, ~5 µs."""
    return spec.model_copy(update={"peak_tflops": dict(spec.peak_tflops)})


def _with_price(spec: GPUSpec, price: Any) -> GPUSpec:
    if not is_number(price):
        raise LlmsimError(f"GPU price must be a number of dollars per GPU-hour, got {price!r}", hint="e.g. price_per_hour_usd=2.5")
    value = float(price)
    if not 0 <= value <= 1e6:  # (NaN fails too) -- beyond a million $/GPU-hour the cost sums overflow
        raise LlmsimError(
            f"GPU price must be a number of dollars per GPU-hour in [0, 1,000,000], got {price!r}",
            hint="e.g. --price 2.5",
        )
    return spec.model_copy(update={"price_per_hour_usd": value})


# --------------------------------------------------------------------------- files


def load_gpu_file(path: str | os.PathLike) -> GPUSpec:
    """Load a GPU from a YAML or JSON mapping of GPUSpec fields (see the module docstring).

    `base: <catalog id or another GPU file>` starts from that GPU: every field not in
    the file is inherited, `efficiency:` and `peak_tflops:` are merged key by key
    (a `null` peak removes that dtype), and name/aliases/source are not inherited.
    `name` defaults to the file's stem.
    """
    return _load_file(Path(path).expanduser(), chain=())


def _load_file(path: Path, chain: tuple[Path, ...]) -> GPUSpec:
    label = path.name
    if not path.is_file():
        raise LlmsimError(f"GPU file '{path}' not found", hint="check the path")
    resolved = path.resolve()
    if resolved in chain:
        raise LlmsimError(
            f"GPU file {label}: 'base' chain loops back to itself ({' -> '.join(p.name for p in (*chain, resolved))})",
            hint="make 'base' name a catalog GPU or a file that does not refer back",
        )
    data = _read_mapping(path)
    # keys `llmsim gpus show --json` adds, derived from the fields: accepted when they agree
    derived = {k: data.pop(k) for k in DERIVED_GPU_KEYS if k in data}

    base_ref = data.pop("base", None)
    if base_ref is None:
        merged = dict(data)
    else:
        if not isinstance(base_ref, str) or not base_ref.strip():
            raise LlmsimError(
                f"GPU file {label}: 'base' must be the name of a catalog GPU or a GPU file, got {base_ref!r}",
                hint="e.g. base: h100-sxm (run `llmsim gpus list` for names)",
            )
        base = _resolve_base(base_ref.strip(), path, chain + (resolved,))
        merged = _merge(base, data, label)
    merged.setdefault("name", path.stem)
    spec = _validate(merged, f"GPU file {label}")
    for k, v in derived.items():
        want = getattr(spec, k)
        if not is_number(v) or not math.isclose(float(v), want, rel_tol=1e-6):
            src = DERIVED_GPU_KEYS[k]
            raise LlmsimError(f"GPU file {label}: {k} = {v!r} disagrees with {src} = {getattr(spec, src)!r} ({want:.6g}); "
                              f"it is derived from {src}",
                              hint=f"drop {k} (as `llmsim gpus show --json` writes it, it only repeats {src}), or set {src}")
    return spec


# the derived quantities `llmsim gpus show --json` prints beside the fields -> the field each comes from
DERIVED_GPU_KEYS = {"memory_bytes": "memory_gib", "memory_bandwidth_bytes_per_s": "memory_bandwidth_gbps"}


def _read_mapping(path: Path) -> dict[str, Any]:
    label = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LlmsimError(f"cannot read GPU file {label}: {e}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise LlmsimError(
            f"GPU file {label} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
            hint="fix the syntax; a .yaml file is also accepted",
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise LlmsimError(f"GPU file {label} is not valid YAML{where}: {problem}", hint="fix the syntax") from None
    if not isinstance(data, dict):
        raise LlmsimError(
            f"GPU file {label} must contain a mapping of GPU fields, got {type(data).__name__}",
            hint="e.g. `base: h100-sxm` and `memory_bandwidth_gbps: 6700` on separate lines",
        )
    return {str(k): v for k, v in data.items()}


def _resolve_base(ref: str, path: Path, chain: tuple[Path, ...]) -> GPUSpec:
    if ref.lower().endswith(GPU_FILE_SUFFIXES):
        base_path = Path(ref).expanduser()
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        if not base_path.is_file():
            raise LlmsimError(f"GPU file {path.name}: base file '{ref}' not found", hint="paths are relative to the file that names them")
        return _load_file(base_path, chain)
    found = _lookup(ref)
    if found is None:
        close = _suggest(ref)
        did_you_mean = f"did you mean {', '.join(close)}? " if close else ""
        raise LlmsimError(
            f"GPU file {path.name}: unknown base GPU '{ref}'",
            hint=f"{did_you_mean}run `llmsim gpus list` for catalog names",
        )
    return found


def _merge(base: GPUSpec, data: dict[str, Any], label: str) -> dict[str, Any]:
    merged = base.model_dump()
    # identity is not inherited: a custom chip must not answer to 'h100'
    merged["aliases"] = ()
    merged.pop("name")
    merged["display_name"] = ""
    merged["source"] = f"{label}: custom GPU based on {base.name} ({base.source})" if base.source else f"{label}: based on {base.name}"
    for k, v in data.items():
        if k in _MERGED_DICT_FIELDS and isinstance(v, dict):
            inner = dict(merged.get(k) or {})
            for ik, iv in v.items():
                ik = _dtype_key(ik) if k == "peak_tflops" else str(ik)
                if iv is None and k == "peak_tflops":
                    inner.pop(ik, None)
                else:
                    inner[ik] = iv
            merged[k] = inner
        else:
            merged[k] = v
    return merged


def _dtype_key(name: Any) -> str:
    """Canonical dtype name when it is one ('bfloat16' -> 'bf16'); else as given, so that
    validation reports it."""
    try:
        return canonical(str(name))
    except LlmsimError:
        return str(name)


# --------------------------------------------------------------------------- validation


def _validate(data: Any, where: str) -> GPUSpec:
    if not isinstance(data, dict):
        raise LlmsimError(f"{where}: a GPU entry must be a mapping of fields, got {type(data).__name__}")
    try:
        return GPUSpec.model_validate(data)
    except ValidationError as e:
        problems = [_describe(err) for err in e.errors()]
        name = data.get("name")
        who = f" (GPU '{name}')" if isinstance(name, str) and name else ""
        raise LlmsimError(
            f"invalid {where}{who}: " + "; ".join(problems),
            hint="field names carry their units (memory_gib, memory_bandwidth_gbps, peak_tflops: {bf16: ...}); "
            "start from a catalog GPU with `base: h100-sxm` to change only a few fields",
        ) from None


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc) if loc else "(file)"


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    if loc and loc[0] == "efficiency":
        return list(Efficiency.model_fields)
    return list(GPUSpec.model_fields) + ["base"]


def _describe(err: ErrorDetails) -> str:
    loc = tuple(err.get("loc", ()))
    field = _field_path(loc)
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    given = err.get("input")
    got = "" if isinstance(given, (dict, list)) else f" (got {given!r})"
    if kind == "missing":
        return f"required field '{field}' is missing"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_fields(loc[:-1]), n=1, cutoff=0.5)
        return f"'{field}' is not a known field" + (f" (did you mean '{close[0]}'?)" if close else "")
    if kind == "greater_than":
        return f"'{field}' must be greater than {ctx.get('gt')}{got}"
    if kind == "greater_than_equal":
        return f"'{field}' must be at least {ctx.get('ge')}{got}"
    if kind == "less_than":
        return f"'{field}' must be less than {ctx.get('lt')}{got}"
    if kind == "less_than_equal":
        return f"'{field}' must be at most {ctx.get('le')}{got}"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float", "finite_number"):
        what = "a whole number" if kind.startswith("int") else "a finite number"
        return f"'{field}' must be {what}{got}"
    if kind in ("string_type",):
        return f"'{field}' must be text{got}"
    if kind in ("dict_type",):
        return f"'{field}' must be a mapping such as {{bf16: 989.4}}{got}"
    if kind in ("tuple_type", "list_type"):
        return f"'{field}' must be a list{got}"
    if kind in ("model_type", "model_attributes_type"):
        return f"'{field}' must be a mapping of fields{got}"
    if kind == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        return f"'{field}': {msg}"
    return f"'{field}': {err.get('msg', 'invalid value')}{got}"
