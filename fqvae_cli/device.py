"""The device is chosen once, from `--device auto|cpu|cuda[:i]`, and passed down."""

from __future__ import annotations

from typing import Any

import torch

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


def describe(device: Any) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
