"""What computed a number: the machine, kernels, threads and library versions of this process, recorded
with every training start and every metric row (docs/provenance.md).

`collect(device)` returns a plain JSON dict. What cannot change within a process (the CPU, its ISA, the
ISA oneDNN dispatches to, the environment settings the libraries read at start, the versions) is read
once and cached; the thread count is read on every call, since a run sets it before it trains.

`kernel_family(details)` is the short label of what decides whether two runs of the same settings give
bit-identical weights on a CPU: the vendor (MKL picks its code path by vendor as well as ISA), the ISA
oneDNN dispatches to (its convolutions and bfloat16 matmuls), torch's own vectorised kernels where they
differ from oneDNN's family, an MKL cap where one is set, and the thread count (work is split, and
reductions summed, differently). `AMD/AVX512_BF16/1t`, `Intel/AMX_BF16/1t`, `AMD/AVX2/2t`. On CUDA: the
GPU, the CUDA and cuDNN versions. The same label is necessary for identical bits, not a promise of them
(library versions and the run's settings count too, and are recorded beside it).

oneDNN's ISA is the line its verbose mode prints once per process (`info,cpu,isa:...`): the most it will
use after `ONEDNN_MAX_CPU_ISA`, read by running one small convolution with verbose output caught from
this process's stdout; where that line was printed already (verbose asked for in the environment) a
child process reads it. torch is imported inside the functions."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fqvae_cli import __version__

# Shown wherever a record predates provenance (or a row was written without one).
NOT_RECORDED = "not recorded"
# Environment settings that change which kernels run or how they split the work, recorded when set.
ENV_KEYS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "MKL_ENABLE_INSTRUCTIONS",
            "MKL_CBWR", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")
# The libraries whose versions a table compares ("mixes library versions").
LIBRARIES = ("torch", "numpy", "scikit-learn", "fqvae")
_ORDER = ("python", *LIBRARIES)
# torch's CPU feature tests, by the name recorded.
_FLAGS = (("AVX2", "_is_avx2_supported"), ("AVX512", "_is_avx512_supported"), ("AVX512_VNNI", "_is_vnni_supported"),
          ("AVX512_BF16", "_is_avx512_bf16_supported"), ("AMX_TILE", "_is_amx_tile_supported"),
          ("AMX_FP16", "_is_amx_fp16_supported"))
_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}
# One convolution large enough for torch to hand it to oneDNN (small ones take another path).
_PROBE = ("import torch\nwith torch.no_grad():\n"
          "    torch.nn.functional.conv2d(torch.ones(8, 16, 32, 32), torch.ones(16, 16, 3, 3))\n")


def collect(device: Any = None) -> dict:
    """This process's provenance for work on `device` (default the CPU): see the module docstring."""
    import torch

    device = torch.device("cpu") if device is None else torch.device(device)
    static = _static()
    return {"cpu": static["cpu"], "threads": int(torch.get_num_threads()), "env": static["env"],
            "device": _device(str(device)), "versions": static["versions"]}


@functools.lru_cache(maxsize=1)
def _static() -> dict:
    import torch

    cpu = _cpuinfo()
    flags = []
    for name, fn in _FLAGS:
        test = getattr(torch.cpu, fn, None)
        try:
            if test is not None and test():
                flags.append(name)
        except Exception:  # noqa: BLE001 - a private test that fails says nothing about the CPU
            pass
    config = torch.__config__.show()
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([0-9][0-9.]*)", config)
    mkl = re.search(r"Math Kernel Library Version ([0-9][0-9.]*)", config)
    return {
        "cpu": {"model": cpu.get("model") or platform.processor() or platform.machine() or "unknown",
                "vendor": _VENDORS.get(cpu.get("vendor", ""), cpu.get("vendor") or _vendor_from(cpu.get("model"))),
                "arch": platform.machine(), "flags": flags,
                "torch_capability": str(torch.backends.cpu.get_cpu_capability()),
                "onednn_isa": onednn_isa(), "onednn": onednn.group(1) if onednn else None,
                "mkl": mkl.group(1) if mkl else None},
        "env": {k: os.environ[k] for k in ENV_KEYS if os.environ.get(k)},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": _version("numpy"), "scikit-learn": _version("scikit-learn"), "fqvae": __version__},
    }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpuinfo() -> dict:
    """The CPU's model name and vendor id from /proc/cpuinfo (Linux); {} elsewhere."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read(200_000)
    except OSError:
        return {}
    found = {}
    for key, field in (("model", "model name"), ("vendor", "vendor_id")):
        m = re.search(rf"^{field}\s*:\s*(.+)$", text, re.MULTILINE)
        if m:
            found[key] = m.group(1).strip()
    return found


def _vendor_from(model: str | None) -> str:
    for name in ("Intel", "AMD", "Apple"):
        if model and name.lower() in model.lower():
            return name
    return platform.machine() or "unknown"


@functools.lru_cache(maxsize=4)
def _device(spec: str) -> dict:
    import torch

    device = torch.device(spec)
    if device.type != "cuda":
        return {"type": device.type}
    props = torch.cuda.get_device_properties(device)
    return {"type": "cuda", "name": props.name, "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


# -- oneDNN's ISA ---------------------------------------------------------------------------------------


def parse_isa(verbose: str) -> str | None:
    """The ISA named by oneDNN's verbose info line (`onednn_verbose,...,info,cpu,isa:Intel AVX2`)."""
    m = re.search(r"^(?:onednn|dnnl)_verbose,.*?info,cpu,isa:(.+?)\s*$", verbose, re.MULTILINE)
    return m.group(1) if m else None


@functools.lru_cache(maxsize=1)
def onednn_isa() -> str | None:
    """The ISA oneDNN dispatches to in this process (None without oneDNN or when it cannot be read)."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    if not (os.environ.get("ONEDNN_VERBOSE") or os.environ.get("DNNL_VERBOSE")):
        # Turning verbose on and off here would override what the environment asked for.
        isa = parse_isa(_verbose_here())
        if isa:
            return isa
    return parse_isa(_verbose_in_child())


def _verbose_here() -> str:
    """oneDNN's verbose output for one small convolution, caught from file descriptor 1 (it writes with C
    stdio); '' if anything goes wrong. The info lines come only the first time verbose output is on."""
    import ctypes

    import torch

    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return ""
    sys.stdout.flush()
    with tempfile.TemporaryFile() as tmp:
        try:
            saved = os.dup(1)
        except OSError:
            return ""
        try:
            libc.fflush(None)
            os.dup2(tmp.fileno(), 1)
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), torch.no_grad():
                    torch.nn.functional.conv2d(torch.ones(8, 16, 32, 32), torch.ones(16, 16, 3, 3))
            finally:
                libc.fflush(None)
                os.dup2(saved, 1)
        except Exception:  # noqa: BLE001 - provenance must never stop a run
            return ""
        finally:
            os.close(saved)
        tmp.seek(0)
        return tmp.read(1 << 20).decode("utf-8", "replace")


def _verbose_in_child() -> str:
    """The same, from a child Python with this environment (so the same ISA cap) and verbose on."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    env.pop("DNNL_VERBOSE", None)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout


# -- labels and descriptions -------------------------------------------------------------------------------


def onednn_family(isa: str | None) -> str | None:
    """oneDNN's verbose ISA name in the short form of ONEDNN_MAX_CPU_ISA: 'Intel AVX2' -> AVX2,
    '... and bfloat16 support' -> AVX512_BF16, '... Intel AMX with bfloat16 ...' -> AMX_BF16."""
    if not isa:
        return None
    head, amx, tail = isa.partition("AMX")
    if amx:
        return "AMX_FP16" if "float16" in tail.replace("bfloat16", "") else "AMX_BF16"
    fp16 = "float16" in head.replace("bfloat16", "")
    if "AVX-512" in head or "AVX10" in head:
        return ("AVX512_FP16" if fp16 else "AVX512_BF16" if "bfloat16" in head
                else "AVX512_VNNI" if "DL Boost" in head else "AVX512")
    if "AVX2" in head:
        return "AVX2_VNNI_2" if "bfloat16" in head else "AVX2_VNNI" if "DL Boost" in head else "AVX2"
    if "SSE4.1" in head or "SSE41" in head:
        return "SSE41"
    if re.search(r"\bAVX\b", head):
        return "AVX"
    return re.sub(r"[^A-Za-z0-9.]+", "_", isa).strip("_")[:40] or None


def _aten_for(family: str | None) -> str | None:
    """torch's vectorised-kernel level that goes with a oneDNN family on the same CPU, uncapped."""
    if family is None:
        return None
    if family.startswith(("AVX512", "AMX")):
        return "AVX512"
    return "AVX2" if family.startswith("AVX2") else None


def _cudnn(version: Any) -> str:
    if not isinstance(version, int):
        return str(version)
    if version >= 90000:  # 9.x encodes major*10000 + minor*100 + patch
        return f"{version // 10000}.{version // 100 % 100}.{version % 100}"
    return f"{version // 1000}.{version // 100 % 10}.{version % 100}"


def kernel_family(details: dict | None) -> str:
    """The kernel-family label of a provenance record (module docstring); NOT_RECORDED for None."""
    if not details:
        return NOT_RECORDED
    device = details.get("device") or {}
    if device.get("type") == "cuda":
        name = re.sub(r"\s+", "_", str(device.get("name") or "GPU").strip())
        return f"{name}/CUDA{device.get('cuda')}/cuDNN{_cudnn(device.get('cudnn'))}"
    cpu = details.get("cpu") or {}
    family = onednn_family(cpu.get("onednn_isa"))
    parts = [str(cpu.get("vendor") or "unknown"), family or "oneDNN_unknown"]
    aten = cpu.get("torch_capability")
    if aten and aten != _aten_for(family):
        parts.append(f"ATen={aten}")
    mkl = (details.get("env") or {}).get("MKL_ENABLE_INSTRUCTIONS")
    if mkl:
        parts.append(f"MKL={str(mkl).upper()}")
    parts.append(f"{details.get('threads')}t")
    return "/".join(parts)


def machine(details: dict | None) -> str:
    """The device by name: the CPU model, or the GPU with CUDA and cuDNN versions."""
    if not details:
        return NOT_RECORDED
    device = details.get("device") or {}
    if device.get("type") == "cuda":
        return f"{device.get('name')} (CUDA {device.get('cuda')}, cuDNN {_cudnn(device.get('cudnn'))})"
    return str((details.get("cpu") or {}).get("model") or "unknown CPU")


def versions(details: dict | None) -> str:
    """'torch 2.13.0, numpy 2.4.6, scikit-learn 1.9.1, fqvae 0.1.0': the versions a table compares."""
    if not details:
        return NOT_RECORDED
    v = details.get("versions") or {}
    return ", ".join(f"{lib} {v.get(lib) or '?'}" for lib in LIBRARIES)


def summary(details: dict | None) -> str:
    """One line: machine, kernel family and versions."""
    if not details:
        return NOT_RECORDED
    return f"{machine(details)}, kernel family {kernel_family(details)}; {versions(details)}"


def describe(details: dict | None) -> list[str]:
    """Every recorded fact as `label: value` lines, for `fqvae runs show`."""
    if not details:
        return [NOT_RECORDED]
    cpu, v = details.get("cpu") or {}, details.get("versions") or {}
    env = details.get("env") or {}
    lines = [f"kernel family: {kernel_family(details)}", f"device: {machine(details)}"]
    if (details.get("device") or {}).get("type") == "cuda":
        lines.append(f"GPU compute capability: {details['device'].get('capability')}")
    lines += [f"CPU: {cpu.get('model')} ({cpu.get('vendor')}, {cpu.get('arch')}); ISA: "
              f"{', '.join(cpu.get('flags') or []) or 'none of AVX2/AVX-512/AMX'}",
              f"torch CPU capability: {cpu.get('torch_capability')}; oneDNN {cpu.get('onednn') or '?'} ISA: "
              f"{cpu.get('onednn_isa') or 'unknown'}; MKL {cpu.get('mkl') or '?'}",
              f"threads: {details.get('threads')}"
              + (f"; environment: {', '.join(f'{k}={val}' for k, val in sorted(env.items()))}" if env else ""),
              "versions: " + ", ".join(f"{k} {v[k]}" for k in [k for k in _ORDER if k in v]
                                       + sorted(k for k in v if k not in _ORDER))]
    return lines


def labelled(records: dict[str, dict]) -> dict[str, dict]:
    """{hash: record with its kernel family}: the provenance records a JSON output refers to."""
    return {h: {**d, "kernel_family": kernel_family(d)} for h, d in sorted(records.items())}


# Which code a run was trained with: the git commit of the checkout, or $FQVAE_CODE_REVISION.

@functools.lru_cache(maxsize=1)
def code_revision() -> str | None:
    """The git commit of the running code (with -dirty for uncommitted changes), or $FQVAE_CODE_REVISION
    for installs without a checkout; None when neither is known."""
    env = os.environ.get("FQVAE_CODE_REVISION")
    if env:
        return env[:64]
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = head.stdout.strip()
    if head.returncode or not re.fullmatch(r"[0-9a-f]{40}", rev):
        return None
    return rev + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
