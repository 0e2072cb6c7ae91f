"""Training is deterministic where it is promised to be: two runs of the same seed and settings, each in
a process of its own, give identical tensors (every weight of the final checkpoint, and the loss curve),
in float32 and in bfloat16 autocast.

Scope: one machine, one thread count (train.threads=1, as every TINY run), one kernel family and the same
library versions; the runs record the same provenance, which the test checks too. Across kernel families
(another CPU, or oneDNN capped with ONEDNN_MAX_CPU_ISA) or thread counts the weights differ, which is why
every run records its provenance (docs/provenance.md). bfloat16 is emulated on an AVX2-only CPU (slower),
hence the few iterations of TINY. The same in one process, which every tier runs, is the first test."""

from __future__ import annotations

import pytest
from helpers import TINY, fqvae_subprocess

from fqvae_cli.registry.store import Registry


def _weights(reg: Registry, name: str) -> dict:
    from safetensors.torch import load_file

    run = reg.get_run(name)
    last = max(reg.artifacts(run.id, kind="checkpoint"), key=lambda a: a.step)
    return load_file(last.path)


def _train_twice(small_data, workspace, settings: list[str], names: tuple[str, str]) -> None:
    """Two runs at once, each in its own process (one thread each, so they do not share a core's work)."""
    env = {"FQVAE_DATA": str(small_data), "FQVAE_HOME": str(workspace)}
    procs = [fqvae_subprocess("train", "--model", "factorqvae", *TINY, *settings, "--name", name, env=env)
             for name in names]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err


def test_same_seed_in_one_process_gives_identical_weights_and_loss_curves(cli, small_data):
    import torch

    names = [cli("train", "--model", "qvae", *TINY, "--seed", seed).stdout.strip().splitlines()[-1]
             for seed in ("5", "5", "6")]
    with Registry() as reg:
        a, b = _weights(reg, names[0]), _weights(reg, names[1])
        curves = [[(m.step, m.value) for m in reg.metrics(reg.get_run(n).id, name="loss/total")] for n in names]
    assert curves[0] == curves[1] and len(curves[0]) == 3
    assert curves[0] != curves[2]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bf16", ["false", "true"])
def test_same_seed_same_settings_give_identical_weights(cli, small_data, workspace, bf16):
    import torch

    settings = ["--seed", "4", "--set", f"train.bf16={bf16}"]
    _train_twice(small_data, workspace, settings, ("a", "b"))
    other = cli("train", "--model", "factorqvae", *TINY, "--seed", "5", "--set", f"train.bf16={bf16}",
                "--name", "other")
    assert other.exit_code == 0, other.stderr
    with Registry() as reg:
        a, b, c = (_weights(reg, n) for n in ("a", "b", "other"))
        runs = [reg.get_run(n) for n in ("a", "b")]
        assert all(r.config["train"]["bf16"] is (bf16 == "true") for r in runs)
        curves = [[(m.step, m.value) for m in reg.metrics(r.id, name="loss/total")] for r in runs]
        starts = reg.starts([r.id for r in runs])
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert curves[0] == curves[1] and len(curves[0]) == 3
    # the comparison can tell runs apart: another seed changes the weights
    assert any(not torch.equal(a[key], c[key]) for key in a)
    # both ran in the same environment, and their records say so
    assert len(starts) == 2 and starts[0].provenance == starts[1].provenance
