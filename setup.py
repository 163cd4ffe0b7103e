"""Build step: compile the serving simulator's inner loop with mypyc, where it can.

The simulator's per-iteration code (`llmsim/serving/engine.py`, `llmsim/serving/steptime.py`)
is plain, type-annotated Python. mypyc (from the mypy project) compiles those same files to C
extension modules, which run the simulator about 1.8x faster with identical results
(`python benchmarks/bench_serve.py` runs both builds side by side;
`tests/test_compiled.py` checks that they agree). Nothing else changes: the rest of the package,
and every number it prints, is the same Python.

A regular install (`pip install .`) compiles them. The package stays pure Python -- the `.py`
files are what runs -- when:
- it is an editable install (`pip install -e .`), so that edits to those files take effect;
- `LLMSIM_PURE_PYTHON=1` is set;
- mypyc or a C compiler is missing, or the compile fails (the extensions are optional: pip
  prints the error and installs the pure-Python package).
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

COMPILED = ["src/llmsim/serving/engine.py", "src/llmsim/serving/steptime.py"]


def _ext_modules() -> list:
    # only a command that builds the package needs the extensions (pip also runs this file for
    # its metadata, egg_info / dist_info, where type-checking and C generation would be wasted)
    building = any(cmd in sys.argv for cmd in ("bdist_wheel", "build", "build_ext", "install"))
    editable = any(cmd in sys.argv for cmd in ("editable_wheel", "develop"))
    if not building or editable or os.environ.get("LLMSIM_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("llmsim: mypyc not available, installing the pure-Python simulator", file=sys.stderr)
        return []
    try:
        exts = mypycify(["--ignore-missing-imports", "--follow-imports=silent", *COMPILED], opt_level="3")
    except (Exception, SystemExit) as e:  # a type error mypyc will not compile: stay pure Python
        print(f"llmsim: mypyc could not compile the simulator ({e}); installing it as pure Python", file=sys.stderr)
        return []
    for ext in exts:
        ext.optional = True  # a failed C compile leaves the pure-Python modules in place
    return exts


setup(ext_modules=_ext_modules())
