"""What a bundle may carry for a run, and each file checked by its kind, from the tar, before anything is
written: the format defines only the files of the run's artifact rows and its config.json, and each
artifact kind has one form.

- checkpoint: safetensors (the header parsed, every tensor's bytes inside the file and accounted for);
- checkpoint_state: a torch file loaded with weights_only=True (tensors and plain containers; a pickle
  that would call a function is refused, never run);
- matrix_importance, matrix_nmi: a numeric 2-D .npy, read with allow_pickle=False;
- snapshot: a PNG; figure: a PNG, PDF or SVG (by its first bytes);
- config.json: a JSON object.

A file of any other kind, or a name no row gives, is refused (a kind is shown in `runs show` and becomes
a path, so `<evil>/../x` never gets that far)."""

from __future__ import annotations

import io
import json
import math
from typing import IO, Any

# kind -> the endings its files may have (fqvae writes these kinds: training/recorder.py, evaluation.py,
# cli/figures.py).
ARTIFACT_KINDS: dict[str, tuple[str, ...]] = {
    "checkpoint": (".safetensors",), "checkpoint_state": (".state.pt",),
    "matrix_importance": (".npy",), "matrix_nmi": (".npy",),
    "snapshot": (".png",), "figure": (".png", ".pdf", ".svg"),
}
CONFIG = "config.json"
_SMALL = 64 << 20  # matrices and configs are read whole; none is near this
_HEADER_LIMIT = 100 << 20  # safetensors' own limit on its JSON header
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def kind_problem(kind: Any, path: str) -> str | None:
    """Why an artifact row of `kind` at `path` (relative to the run folder) is not one a bundle carries."""
    if kind not in ARTIFACT_KINDS:
        return f"artifact kind {kind!r} is not one of {', '.join(ARTIFACT_KINDS)}"
    if not path.endswith(ARTIFACT_KINDS[kind]):
        return f"{kind} {path!r} does not end in {' or '.join(ARTIFACT_KINDS[kind])}"
    return None


def _safetensors(fh: IO[bytes], size: int) -> str | None:
    head = fh.read(8)
    if len(head) < 8:
        return "it is shorter than a safetensors header"
    n = int.from_bytes(head, "little")
    if n > min(_HEADER_LIMIT, size - 8):
        return "its header length is larger than the file"
    try:
        header = json.loads(fh.read(n))
    except (ValueError, RecursionError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    spans = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(t, dict) and t.get("dtype") in _DTYPE_BYTES and isinstance(t.get("shape"), list)
                and all(isinstance(d, int) and d >= 0 for d in t["shape"]) and isinstance(t.get("data_offsets"), list)
                and len(t["data_offsets"]) == 2 and all(isinstance(o, int) for o in t["data_offsets"])):
            return f"tensor {name!r} has a malformed entry"
        start, end = t["data_offsets"]
        if not 0 <= start <= end or end - start != math.prod(t["shape"]) * _DTYPE_BYTES[t["dtype"]]:
            return f"tensor {name!r} has offsets that do not fit its shape"
        spans.append((start, end))
    spans.sort()
    if any(a[1] != b[0] for a, b in zip(spans, spans[1:], strict=False)) or (spans and spans[0][0] != 0) or (
            (spans[-1][1] if spans else 0) != size - 8 - n):
        return "its tensors do not cover its data exactly"
    return None


def _state(fh: IO[bytes]) -> str | None:
    import torch

    try:
        torch.load(fh, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any refusal or parse failure means it is not loaded
        # torch's refusal is paragraphs long; the line naming the blocked global is the one that says why.
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        why = next((ln for ln in lines if "unsupported" in ln.lower()), lines[0]).rstrip(".")
        return f"holds more than tensors and plain containers, or is damaged ({why[:200]})"
    return None


def _matrix(data: bytes) -> str | None:
    import numpy as np

    try:
        m = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        return f"is not a plain numeric .npy array ({str(exc).splitlines()[0][:120]})"
    if not isinstance(m, np.ndarray) or m.dtype.kind not in "biuf" or m.ndim != 2:
        return "is not a plain numeric .npy array (a 2-D matrix of numbers)"
    return None


def _picture(data: bytes, path: str) -> str | None:
    if path.endswith(".png"):
        return None if data.startswith(b"\x89PNG\r\n\x1a\n") else "is not a PNG image"
    if path.endswith(".pdf"):
        return None if data.startswith(b"%PDF-") else "is not a PDF document"
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    return None if text.startswith((b"<?xml", b"<svg")) else "is not an SVG image"


def _config(data: bytes) -> str | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return "is not JSON"
    return None if isinstance(value, dict) else "is not a JSON object"


def content_problem(kind: str, path: str, size: int, open_member: Any) -> str | None:
    """Why the file of `kind` (CONFIG for config.json) at `path`, `size` bytes, is not what that kind holds;
    `open_member()` gives a fresh, seekable reader of its bytes."""
    with open_member() as fh:
        if kind == "checkpoint":
            why = _safetensors(fh, size)
            return None if why is None else f"is not a readable safetensors file ({why})"
        if kind == "checkpoint_state":
            return _state(fh)
        if size > _SMALL:
            return f"is {size:,} bytes, more than a {kind.replace('_', ' ')} ever is"
        data = fh.read(_SMALL) if kind.startswith("matrix_") or kind == CONFIG else fh.read(64)
    if kind.startswith("matrix_"):
        return _matrix(data)
    if kind == CONFIG:
        return _config(data)
    return _picture(data, path)
