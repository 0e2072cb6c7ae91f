"""What this process computes on: the device, chosen once from `--device auto|cpu|cuda[:i]` and passed down,
and the CPU cores it may use (thread and worker counts are bounded by them)."""

from __future__ import annotations

import os
from typing import Any

import torch

from fqvae_cli import console
from fqvae_cli.errors import UsageError


def resolve_device(spec: str = "auto") -> Any:
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device '{spec}'; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device '{spec}' was asked for but no CUDA GPU is available; use --device cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"device '{spec}' does not exist; this machine has {torch.cuda.device_count()} GPU(s).")
    elif dev.type != "cpu":
        raise UsageError(f"device type '{dev.type}' is not supported; use auto, cpu or cuda[:N].")
    return dev


def native_bf16(device: Any) -> bool:
    """Whether `device` computes bfloat16 in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX tiles. Elsewhere (an AVX2-only CPU) bfloat16 autocast is emulated and several
    times slower than float32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def device_label(device: Any) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def available_cores() -> int:
    """CPU cores this process may run on: its affinity mask (a Slurm allocation, taskset), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def bounded_by_cores(value: int, what: str) -> int:
    """A count of CPU threads or processes, at most the cores this process may use: a larger value is
    lowered to that with a warning, not refused, because a run's settings travel (queued on one machine,
    executed or resumed on another) and only the machine that starts the threads knows its cores."""
    cores = available_cores()
    if value > cores:
        console.warn(f"{what}={value} is more than the {cores} CPU core(s) this process may use; using {cores}.")
        return cores
    return value
