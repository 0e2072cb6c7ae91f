"""Provenance: what this process records (machine, ISA, oneDNN's ISA, threads, versions), the kernel-family
labels, the registry's records (stored once, referred to by training starts and metric rows, on SQLite and
PostgreSQL), `fqvae runs show`, and the `fqvae table` footer and `--kernel-family` filter."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import threading

import pytest
from helpers import TINY, stop_after_checkpoint

from fqvae_cli import provenance as prov
from fqvae_cli.errors import UsageError
from fqvae_cli.registry.store import Registry

AMX = ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit "
       "integer support")


def _cpu(vendor="AMD", isa="Intel AVX-512 with Intel DL Boost and bfloat16 support", aten="AVX512", threads=1,
         model="AMD EPYC 9R14", env=None, torch_version="2.13.0+cpu") -> dict:
    """A provenance record as collect() writes it, for a machine that is not this one."""
    return {"cpu": {"model": model, "vendor": vendor, "arch": "x86_64", "flags": ["AVX2", "AVX512", "AVX512_BF16"],
                    "torch_capability": aten, "onednn_isa": isa, "onednn": "3.12.0", "mkl": "2024.2"},
            "threads": threads, "env": env or {}, "device": {"type": "cpu"},
            "versions": {"python": "3.11.7", "torch": torch_version, "numpy": "2.4.6", "scikit-learn": "1.9.1",
                         "fqvae": "0.1.0"}}


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("isa, family", [
    ("Intel SSE4.1", "SSE41"),
    ("Intel AVX", "AVX"),
    ("Intel AVX2", "AVX2"),
    ("Intel AVX2 with Intel DL Boost", "AVX2_VNNI"),
    ("Intel AVX2 with Intel DL Boost with 8-bit integer, float16 and bfloat16 support", "AVX2_VNNI_2"),
    ("Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions", "AVX512"),
    ("Intel AVX-512 with Intel DL Boost", "AVX512_VNNI"),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support", "AVX512_BF16"),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support", "AVX512_FP16"),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer support",
     "AMX_BF16"),
    (AMX, "AMX_BF16"),
    ("Intel AVX10.1/512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with 8-bit integer, bfloat16 "
     "and float16 support", "AMX_FP16"),
    (None, None),
])
def test_onednn_isa_names_become_the_short_names_of_its_cap(isa, family):
    assert prov.onednn_family(isa) == family


def test_the_isa_is_read_from_onednn_verbose_info_line():
    text = ("onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71)\nonednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2\n"
            f"onednn_verbose,v1,info,cpu,isa:{AMX}\nonednn_verbose,v1,info,gpu,runtime:none\n")
    assert prov.parse_isa(text) == AMX
    assert prov.parse_isa("onednn_verbose,info,cpu,isa:Intel AVX2\n") == "Intel AVX2"  # oneDNN 2.x, no v1
    assert prov.parse_isa("onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,...\n") is None


def test_kernel_family_labels():
    assert prov.kernel_family(_cpu()) == "AMD/AVX512_BF16/1t"
    assert prov.kernel_family(_cpu(vendor="Intel", isa=AMX, threads=2)) == "Intel/AMX_BF16/2t"
    # oneDNN capped below the CPU: torch's own kernels stay AVX-512, so the label says so
    assert prov.kernel_family(_cpu(vendor="Intel", isa="Intel AVX2")) == "Intel/AVX2/ATen=AVX512/1t"
    assert prov.kernel_family(_cpu(env={"MKL_ENABLE_INSTRUCTIONS": "avx2"})) == "AMD/AVX512_BF16/MKL=AVX2/1t"
    assert prov.kernel_family(_cpu(isa=None, aten="AVX2")) == "AMD/oneDNN_unknown/ATen=AVX2/1t"
    gpu = {**_cpu(), "device": {"type": "cuda", "name": "NVIDIA H200", "capability": "9.0", "cuda": "12.8",
                                "cudnn": 91002}}
    assert prov.kernel_family(gpu) == "NVIDIA_H200/CUDA12.8/cuDNN9.10.2"
    assert prov.machine(gpu) == "NVIDIA H200 (CUDA 12.8, cuDNN 9.10.2)"
    assert prov.kernel_family({**gpu, "device": {**gpu["device"], "cudnn": 8902}}).endswith("/cuDNN8.9.2")
    assert prov.kernel_family(None) == prov.machine(None) == prov.versions(None) == "not recorded"
    assert prov.versions(_cpu()) == "torch 2.13.0+cpu, numpy 2.4.6, scikit-learn 1.9.1, fqvae 0.1.0"
    assert prov.summary(_cpu()) == ("AMD EPYC 9R14, kernel family AMD/AVX512_BF16/1t; torch 2.13.0+cpu, numpy "
                                    "2.4.6, scikit-learn 1.9.1, fqvae 0.1.0")


# ---------------------------------------------------------------- collecting


def test_collect_records_this_process():
    import importlib.metadata

    import numpy
    import torch

    from fqvae_cli import __version__

    found = prov.collect()
    assert found["device"] == {"type": "cpu"}
    assert found["versions"] == {"python": platform.python_version(), "torch": torch.__version__,
                                 "numpy": numpy.__version__, "fqvae": __version__,
                                 "scikit-learn": importlib.metadata.version("scikit-learn")}
    assert found["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert ("AVX2" in found["cpu"]["flags"]) == torch.cpu._is_avx2_supported()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert prov.collect()["threads"] == 1  # read on every call: a run sets its threads first
    finally:
        torch.set_num_threads(before)
    assert prov.collect()["threads"] == before
    json.dumps(found, allow_nan=False)  # plain JSON, as the registry stores it


def _child(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="oneDNN's ISA caps are x86 names")
def test_onednn_isa_is_read_without_a_trace_on_stdout_and_follows_its_cap():
    """In a fresh process: the ISA read in-process (verbose output caught from file descriptor 1) is the one
    oneDNN prints with ONEDNN_VERBOSE=1, nothing of it reaches stdout, and ONEDNN_MAX_CPU_ISA is obeyed."""
    code = ("import json; from fqvae_cli import provenance as p; d = p.collect(); "
            "print(json.dumps([d['cpu']['onednn_isa'], p.kernel_family(d), d['env']]))")
    plain = _child(code)
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.splitlines()) == 1 and "onednn_verbose" not in plain.stdout + plain.stderr
    isa, family, env = json.loads(plain.stdout)
    verbose = _child("import torch; torch.nn.functional.conv2d(torch.ones(8, 16, 32, 32), torch.ones(16, 16, 3, 3))",
                     ONEDNN_VERBOSE="1")
    assert isa and isa == prov.parse_isa(verbose.stdout)
    # verbose asked for in the environment: the line is already printed, a child process reads it instead
    asked = _child(code, ONEDNN_VERBOSE="1")
    assert json.loads(asked.stdout.splitlines()[-1])[0] == isa
    capped = _child(code, ONEDNN_MAX_CPU_ISA="SSE41")
    isa_c, family_c, env_c = json.loads(capped.stdout)
    assert isa_c == "Intel SSE4.1" and env_c == {**env, "ONEDNN_MAX_CPU_ISA": "SSE41"}
    vendor, *_rest, threads = family.split("/")
    assert family_c.startswith(f"{vendor}/SSE41/ATen=") and family_c.endswith(f"/{threads}")


def test_a_cuda_device_is_recorded_by_name_and_versions(monkeypatch):
    from types import SimpleNamespace

    import torch

    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda dev: SimpleNamespace(name="NVIDIA H200", major=9, minor=0))
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    prov._device.cache_clear()
    try:
        found = prov.collect("cuda:0")
    finally:
        prov._device.cache_clear()
    assert found["device"] == {"type": "cuda", "name": "NVIDIA H200", "capability": "9.0", "cuda": "12.8",
                               "cudnn": 91002}
    assert prov.kernel_family(found) == "NVIDIA_H200/CUDA12.8/cuDNN9.10.2"


# ---------------------------------------------------------------- the registry


def _count(url: str, table: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def test_records_are_stored_once_and_starts_keep_every_machine(db_url):
    a, b = _cpu(), _cpu(vendor="Intel", isa=AMX, model="Intel Xeon 8480+")
    with Registry(db_url) as reg:
        run = reg.create_run(model="qvae", dataset="synth3d", profile="quick", seed=0, config={})
        assert reg.starts([run.id]) == []
        reg.transition(run.id, "running", provenance=a, step=0)
        reg.log_metrics(run.id, [("loss", 1.0, 2, "train"), ("lr", 0.1, 2, "train")], provenance=a)
        reg.log_metrics(run.id, [("loss", 0.9, 4, "train")], provenance=json.loads(json.dumps(a)))  # equal copy
        reg.transition(run.id, "interrupted")
        reg.transition(run.id, "running", provenance=b, step=4)  # resumed on another machine
        reg.log_metrics(run.id, [("loss", 0.8, 6, "train")], provenance=b)
        reg.log_metrics(run.id, [("dci_d", 0.5, 6, "eval", "quick")])  # written without provenance
        with pytest.raises(UsageError, match="goes with a move to running"):
            reg.transition(run.id, "finished", provenance=a)
        reg.transition(run.id, "finished")
        starts = reg.starts([run.id])
        ha, hb = (prov_key(a), prov_key(b))
        assert [(s.step, s.provenance) for s in starts] == [(0, ha), (4, hb)]  # the first start is kept
        assert [m.provenance for m in reg.metrics(run.id)] == [ha, ha, ha, hb, None]
        assert reg.provenance([ha, hb, "0" * 64]) == {ha: a, hb: b}
        assert _count(db_url, "provenance") == 2
        with pytest.raises(UsageError, match="plain JSON"):
            reg.log_metrics(run.id, [("x", 1.0)], provenance={"cpu": {1, 2}})
        reg.delete_run(run.id)
        assert reg.starts([run.id]) == [] and _count(db_url, "run_starts") == 0
        assert _count(db_url, "provenance") == 2  # records stay for other rows


def prov_key(details: dict) -> str:
    from fqvae_cli.registry.records import provenance_key

    return provenance_key(details)[1]


def test_one_record_written_at_once_by_many_processes_is_stored_once(db_url):
    """Four writers log rows with the same new record at the same time: no conflict, one record."""
    with Registry(db_url) as reg:
        run = reg.create_run(model="qvae", dataset="synth3d", profile="quick", seed=0, config={})
    errors: list[BaseException] = []
    record = _cpu(threads=7)
    barrier = threading.Barrier(4)

    def write(i: int) -> None:
        try:
            with Registry(db_url) as mine:
                barrier.wait()
                mine.log_metrics(run.id, [("loss", float(i), i, "train")], provenance=record)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with Registry(db_url) as reg:
        assert {m.provenance for m in reg.metrics(run.id)} == {prov_key(record)}
    assert _count(db_url, "provenance") == 1


# ---------------------------------------------------------------- runs show and the table


def _finished(reg, model: str, seed: int, record: dict | None, values: list[float], protocol: str = "quick",
              scored: dict | None = None):
    from fqvae_cli.experiments import COLUMNS, resolve_run_config

    cfg = resolve_run_config(model, "synth3d", "quick", seed, {})
    run = reg.create_run(model=model, dataset="synth3d", profile="quick", seed=seed, config=cfg.model_dump(mode="json"))
    if record is not None:
        reg.transition(run.id, "running", provenance=record, step=0)
    reg.transition(run.id, "finished")
    reg.log_metrics(run.id, [(c, v, 1, "eval", protocol) for c, v in zip(COLUMNS, values, strict=True)],
                    provenance=scored if scored is not None else record)
    return run


def test_runs_show_names_what_trained_and_computed_each_row(cli):
    a, b = _cpu(), _cpu(vendor="Intel", isa=AMX, model="Intel Xeon 8480+", threads=2)
    with Registry() as reg:
        run = reg.create_run(model="qvae", dataset="synth3d", profile="quick", seed=0, config={}, name="two")
        reg.transition(run.id, "running", provenance=a, step=0)
        reg.log_metrics(run.id, [("loss", 1.0, 2, "train")], provenance=a)
        reg.transition(run.id, "interrupted")
        reg.transition(run.id, "running", provenance=b, step=3, host="xeon")
        reg.transition(run.id, "finished")
        reg.log_metrics(run.id, [("dci_d", 0.5, 6, "eval", "quick")], provenance=b)
        reg.log_metrics(run.id, [("dci_i", 0.7, 6, "eval", "quick")])
        old = reg.create_run(model="ae", dataset="synth3d", profile="quick", seed=0, config={}, name="old")
        reg.transition(old.id, "finished")
    res = cli("runs", "show", "two")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    lines = [line.strip() for line in out.splitlines()]
    trained = [line for line in lines if line.startswith("iteration ")]
    assert [t.split()[:3] + t.split()[-2:] for t in trained] == [
        ["iteration", "0", run.host or "?", "[1]", "AMD/AVX512_BF16/1t"],
        ["iteration", "3", "xeon", "[2]", "Intel/AMX_BF16/2t"]]
    rows = {line.split("│")[3].strip(): line.split("│")[6].strip() for line in out.splitlines()
            if line.startswith("│")}
    assert rows == {"loss": "[1]", "dci_d": "[2]", "dci_i": "not recorded"}
    assert "[1] kernel family: AMD/AVX512_BF16/1t" in out and "[2] kernel family: Intel/AMX_BF16/2t" in out
    assert "device: Intel Xeon 8480+" in out and "oneDNN 3.12.0 ISA: " + AMX in out
    doc = json.loads(cli("runs", "show", "two", "--json").stdout)
    ha, hb = prov_key(a), prov_key(b)
    assert [(s["step"], s["provenance"]) for s in doc["starts"]] == [(0, ha), (3, hb)]
    assert {m["name"]: m["provenance"] for m in doc["metrics"]} == {"loss": ha, "dci_d": hb, "dci_i": None}
    assert doc["provenance"] == {ha: {**a, "kernel_family": "AMD/AVX512_BF16/1t"},
                                 hb: {**b, "kernel_family": "Intel/AMX_BF16/2t"}}
    old_out = cli("runs", "show", "old").stdout
    assert "trained with" in old_out and "not recorded" in old_out.split("trained with")[1]


def test_table_footer_names_machines_and_the_cells_that_mix_them(cli):
    amd, xeon = _cpu(), _cpu(vendor="Intel", isa=AMX, model="Intel Xeon 8480+")
    newer = _cpu(torch_version="2.14.0+cpu")
    with Registry() as reg:
        fq = [_finished(reg, "factorqvae", 0, amd, [0.5] * 7), _finished(reg, "factorqvae", 1, xeon, [0.7] * 7)]
        qv = [_finished(reg, "qvae", 0, amd, [0.4] * 7), _finished(reg, "qvae", 1, newer, [0.6] * 7)]
        ae = _finished(reg, "ae", 0, None, [0.3] * 7)
        ae1 = _finished(reg, "ae", 1, amd, [0.2] * 7, scored=_cpu(threads=2))
    res = cli("table", "--format", "markdown")
    assert res.exit_code == 0, res.stderr
    full = res.stdout
    rest = "numpy 2.4.6, scikit-learn 1.9.1, fqvae 0.1.0"
    for line in (f"Trained on: AMD EPYC 9R14, kernel family AMD/AVX512_BF16/1t; torch 2.13.0+cpu, {rest} (3 runs).",
                 f"Trained on: AMD EPYC 9R14, kernel family AMD/AVX512_BF16/1t; torch 2.14.0+cpu, {rest} (1 run).",
                 f"Trained on: Intel Xeon 8480+, kernel family Intel/AMX_BF16/1t; torch 2.13.0+cpu, {rest} (1 run).",
                 f"Scored on: AMD EPYC 9R14, kernel family AMD/AVX512_BF16/1t; torch 2.13.0+cpu, {rest} (2 runs).",
                 f"Scored on: AMD EPYC 9R14, kernel family AMD/AVX512_BF16/2t; torch 2.13.0+cpu, {rest} (1 run)."):
        assert f"_{line}_" in full, line
    assert "Trained on: not recorded (1 run, from before fqvae recorded provenance)." in full
    assert (f"synth3d / FactorQVAE mixes kernel families in training: AMD/AVX512_BF16/1t (run {fq[0].short_id}); "
            f"Intel/AMX_BF16/1t (run {fq[1].short_id}).") in full
    assert (f"synth3d / QVAE mixes library versions: torch 2.13.0+cpu, numpy 2.4.6, scikit-learn 1.9.1, fqvae 0.1.0 "
            f"(run {qv[0].short_id}); torch 2.14.0+cpu, numpy 2.4.6, scikit-learn 1.9.1, fqvae 0.1.0 "
            f"(run {qv[1].short_id}).") in full
    assert (f"synth3d / AE mixes kernel families in training: AMD/AVX512_BF16/1t (run {ae1.short_id}); "
            f"not recorded (run {ae.short_id}).") in full
    assert (f"synth3d / AE was scored in several kernel families: AMD/AVX512_BF16/2t (run {ae1.short_id}); "
            f"not recorded (run {ae.short_id}).") in full
    assert "/ QVAE mixes kernel families" not in full and "No cell mixes" not in full
    data = json.loads(cli("table", "--format", "json").stdout)
    cells = {c["row"]: c["kernel_families"] for c in data["cells"] if c["runs"]}
    assert cells == {"ae": ["AMD/AVX512_BF16/1t", "not recorded"], "qvae": ["AMD/AVX512_BF16/1t"],
                     "factorqvae": ["AMD/AVX512_BF16/1t", "Intel/AMX_BF16/1t"]}
    assert data["provenance"][-1].startswith("Runs agree to the last digit only within one kernel family")
    assert data["provenance_records"][prov_key(xeon)]["kernel_family"] == "Intel/AMX_BF16/1t"

    res = cli("table", "--format", "json", "--kernel-family", "AMD/AVX512_BF16/1t")
    assert res.exit_code == 0, res.stderr
    kept = json.loads(res.stdout)
    assert {c["row"]: c["runs"] for c in kept["cells"] if c["runs"]} == {
        "ae": [ae1.short_id], "qvae": [qv[0].short_id, qv[1].short_id], "factorqvae": [fq[0].short_id]}
    assert kept["provenance"][0] == ("Only runs trained in kernel family AMD/AVX512_BF16/1t; 2 run(s) of other "
                                     "kernel families or without provenance left out.")
    assert not any("FactorQVAE mixes" in line for line in kept["provenance"])
    res = cli("table", "--kernel-family", "Intel/AVX2/1t")
    assert res.exit_code != 0 and res.stderr.count("\n") == 1
    assert ("no run of this table trained in kernel family 'Intel/AVX2/1t'; its runs trained in: AMD/AVX512_BF16/1t "
            "(4 runs), Intel/AMX_BF16/1t (1 run), not recorded (1 run).") in res.stderr


def test_a_table_of_runs_from_before_provenance_says_so(cli):
    with Registry() as reg:
        _finished(reg, "qvae", 0, None, [0.4] * 7)
    out = cli("table", "--format", "markdown").stdout
    assert "_Provenance: not recorded (these runs are from before fqvae recorded it; docs/provenance.md)._" in out
    assert "mixes" not in out


def test_a_run_resumed_on_another_machine_keeps_both_and_its_table_says_so(cli, small_data, tiny_protocol,
                                                                            monkeypatch):
    """Trained here to iteration 3, resumed "elsewhere" (the recorded provenance replaced), evaluated here."""
    with monkeypatch.context() as m:
        stop_after_checkpoint(m, 3)
        res = cli("train", "--model", "qvae", *TINY, "--name", "moved")
    assert res.exit_code == 130, res.stderr
    here = prov.collect()
    # another machine: an AMX Xeon, with three threads (so it differs from this one wherever the test runs)
    elsewhere = {**here, "threads": 3, "cpu": {**here["cpu"], "vendor": "Intel", "model": "Intel Xeon 8480+",
                                               "onednn_isa": AMX, "torch_capability": "AVX512"}}
    with monkeypatch.context() as m:
        m.setattr(prov, "collect", lambda device=None: elsewhere)
        assert cli("train", "--resume", "moved", "--device", "cpu").exit_code == 0
    assert cli("evaluate", "moved", "--protocol", "tiny", "--device", "cpu").exit_code == 0
    with Registry() as reg:
        run = reg.get_run("moved")
        starts = reg.starts([run.id])
        records = reg.provenance([s.provenance for s in starts])
        rows = reg.metrics(run.id)
    first, second = (records[s.provenance] for s in starts)
    assert [s.step for s in starts] == [0, 3]
    assert first["threads"] == 1 and first["cpu"] == here["cpu"]  # TINY trains on one thread
    assert prov.kernel_family(second) == "Intel/AMX_BF16/3t"
    by_step = {(m.name, m.step): m.provenance for m in rows if m.protocol is None}
    assert by_step[("loss/total", 2)] == starts[0].provenance and by_step[("loss/total", 6)] == starts[1].provenance
    final = [m for m in rows if m.protocol == "final"]
    assert [m.provenance for m in final] == [starts[1].provenance]  # the training MSE, where training ended
    evaluated = {m.provenance for m in rows if m.protocol == "tiny"}
    assert len(evaluated) == 1 and None not in evaluated  # fqvae evaluate: this process, its own threads
    shown = cli("runs", "show", "moved").stdout
    assert "iteration 0" in shown and "iteration 3" in shown and "Intel/AMX_BF16/3t" in shown
    setup = ["--set", "train.steps=6", "--set", "train.batch_size=8", "--set", "model.disc_width=32"]
    res = cli("table", "--protocol", "tiny", "--rows", "qvae", "--format", "json", *setup)
    (cell,) = json.loads(res.stdout)["cells"]
    assert cell["runs"] == [run.short_id]
    assert cell["kernel_families"] == sorted([prov.kernel_family(first), "Intel/AMX_BF16/3t"])
    mixes = [line for line in json.loads(res.stdout)["provenance"] if "mixes kernel families" in line]
    assert mixes == [f"synth3d / QVAE mixes kernel families in training: {cell['kernel_families'][0]} (run "
                     f"{run.short_id}); {cell['kernel_families'][1]} (run {run.short_id})."]
    res = cli("table", "--protocol", "tiny", "--rows", "qvae", "--format", "json", *setup,
              "--kernel-family", prov.kernel_family(first))
    assert res.exit_code == 0 and json.loads(res.stdout)["cells"][0]["runs"] == []  # it did not train only here
