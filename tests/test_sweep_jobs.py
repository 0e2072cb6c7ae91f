"""How many processes a worker gives its DCI fits: every core it holds when a GPU waits on them, one on the
CPU where sibling workers train on the other cores. No GPU is needed: only the device's type is read."""

from __future__ import annotations

import pytest
import torch

from fqvae_cli.runs import workers

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_dci_jobs_follow_the_device_and_the_cores_held():
    assert workers.dci_jobs(CUDA, 6) == 6
    assert workers.dci_jobs(CUDA) == workers.available_cores() >= 1
    assert workers.dci_jobs(CPU) == 1 and workers.dci_jobs(CPU, 6) == 1


class _OneRunQueue:
    """A registry holding one queued run."""

    def __init__(self):
        self.left = [object()]

    def requeue_stale(self, _after):
        pass

    def claim_next_queued(self, _me, only=None):
        return self.left.pop() if self.left else None


@pytest.mark.parametrize(("device", "given", "expected"), [
    (CUDA, None, "cores"), (CPU, None, 1), (CUDA, 3, 3), (CPU, 4, 4)])
def test_run_worker_passes_its_jobs_to_evaluation(monkeypatch, device, given, expected):
    seen = []
    monkeypatch.setattr(workers, "execute", lambda _reg, _run, _dev, *, jobs, show_progress, session: seen.append(jobs))
    assert workers.run_worker(_OneRunQueue(), device, jobs=given, show_progress=False) == 1
    assert seen == [workers.available_cores() if expected == "cores" else expected]


@pytest.mark.parametrize(("args", "device", "expected"), [
    ([], CUDA, "cores"), (["--threads", "3"], CUDA, 3), (["--jobs", "5"], CUDA, 5), ([], CPU, 1),
    (["--threads", "3"], CPU, 1)])
def test_worker_command_defaults_jobs_by_device(cli, monkeypatch, args, device, expected):
    import fqvae_cli.device

    seen = {}
    monkeypatch.setattr(fqvae_cli.device, "resolve_device", lambda _spec: device)
    monkeypatch.setattr(workers, "run_worker", lambda _reg, _dev, **kw: seen.update(kw) or 0)
    threads = torch.get_num_threads()
    try:
        res = cli("worker", "--quiet", *args)
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.stderr
    want = workers.available_cores() if expected == "cores" else expected
    if "--threads" in args:  # --threads is bounded by the cores this process may use, and the fits with it
        want = min(want, workers.available_cores())
    assert seen["jobs"] == want
