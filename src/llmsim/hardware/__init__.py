"""Accelerators: what a chip can do (GPUSpec), the built-in catalog and user-defined GPUs."""

from .catalog import get_gpu, list_gpus, load_gpu_file
from .spec import Efficiency, GPUSpec

__all__ = ["GPUSpec", "Efficiency", "get_gpu", "list_gpus", "load_gpu_file"]
