"""MLflow, an optional extra (`pip install 'fqvae[mlflow]'`): a run's settings as params, every training
row as a metric at its iteration, snapshots and figures as image artifacts, evaluation rows as metrics
named by protocol (and one JSON file of the full rows per protocol and checkpoint), tags naming the
fqvae run, and the run's status at the end.

Where: `MLFLOW_TRACKING_URI` (a server `http://host:5000`, `sqlite:///mlflow.db`, or a file store),
unset: `sqlite:///<workspace>/mlflow.db` beside the registry. Experiment: `MLFLOW_EXPERIMENT_NAME`, unset:
`fqvae`. The tracker's run is found by its `fqvae.run_id` tag, so a resumed run and `runs sync` continue
the same MLflow run, and a point (key, step) MLflow already holds is never logged twice; images keep
their file names, so logging one again replaces it.

MLflow's HTTP client retries for minutes by default; unless the environment says otherwise, a request
here gives up after 10 s and one retry, so a server that dies mid-run costs the run seconds, once."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fqvae_cli.registry.lifecycle import FAILED, FINISHED, INTERRUPTED, QUEUED
from fqvae_cli.trackers.base import Link, Tracker, flat_settings, metric_key, row_json, row_key

INSTALL = "pip install 'fqvae[mlflow]'"
TAG = "fqvae.run_id"
DEFAULT_EXPERIMENT = "fqvae"
PARAM_LIMIT = 6000  # characters MLflow keeps of a param value
BATCH = (100, 1000)  # params, metrics per log_batch request (MLflow's limits)
STATUS = {FINISHED: "FINISHED", FAILED: "FAILED", INTERRUPTED: "KILLED", QUEUED: "KILLED"}  # queued: claim lost
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    from fqvae_cli.paths import workspace

    return f"sqlite:///{workspace() / 'mlflow.db'}"


def check() -> None:
    """Raise ImportError without the extra, ConnectionError when a tracking server does not answer."""
    import mlflow  # noqa: F401 - only checking that the optional extra is installed

    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as resp:  # noqa: S310 - the user's own server
                resp.read(64)
        except (OSError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionError(f"the MLflow tracking server at {uri} does not answer ({reason})") from None


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id = ""
        self.seen: dict[str, set[int]] = {}  # steps MLflow already holds, per metric key

    def start(self, run: Any, config: dict, *, start: int = 0) -> Link | None:
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from mlflow.entities import Param, RunTag, ViewType
        from mlflow.tracking import MlflowClient

        uri = tracking_uri()
        self.client = client = MlflowClient(uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or DEFAULT_EXPERIMENT
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
        found = client.search_runs([exp_id], filter_string=f"tags.`{TAG}` = '{run.id}'",
                                   run_view_type=ViewType.ACTIVE_ONLY, max_results=1)
        tags = {TAG: run.id, "fqvae.short_id": run.short_id, "fqvae.model": run.model, "fqvae.dataset": run.dataset,
                "fqvae.profile": run.profile, "fqvae.seed": str(run.seed), "fqvae.status": run.status}
        if found:
            held = found[0]
            self.run_id = held.info.run_id
            client.update_run(self.run_id, status="RUNNING")
            self.seen = {key: {m.step for m in client.get_metric_history(self.run_id, key)}
                         for key in held.data.metrics}
            params = {k: v for k, v in self._params(config).items() if k not in held.data.params}
        else:
            created = client.create_run(exp_id, run_name=run.name or run.short_id)
            self.run_id = created.info.run_id
            params = self._params(config)
        batch = [Param(k, v) for k, v in params.items()]
        for part in _chunks(batch, BATCH[0]):
            client.log_batch(self.run_id, params=part)
        client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        url = (f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{self.run_id}"
               if uri.startswith(("http://", "https://")) else None)
        return Link(self.name, self.run_id, url=url, where=None if url else uri)

    @staticmethod
    def _params(config: dict) -> dict[str, str]:
        return {k: str(v)[:PARAM_LIMIT] for k, v in flat_settings(config).items()}

    def _log(self, points: list[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        fresh = [Metric(k, float(v), now, step) for k, v, step in points if step not in self.seen.get(k, ())]
        for part in _chunks(fresh, BATCH[1]):
            self.client.log_batch(self.run_id, metrics=part)
        for m in fresh:
            self.seen.setdefault(m.key, set()).add(m.step)

    def log_scalars(self, iteration: int, values: dict[str, float]) -> None:
        self._log([(metric_key(k), v, iteration) for k, v in values.items()])

    def log_image(self, iteration: int, name: str, png: Path) -> None:
        self.client.log_artifact(self.run_id, str(png), artifact_path=f"images/{name}")

    def log_metric_rows(self, rows: Sequence[Any]) -> None:
        self._log([(row_key(r), r.value, r.step or 0) for r in rows])
        groups: dict[tuple[str, int], list[dict]] = {}
        for r in rows:
            groups.setdefault((r.protocol or "none", r.step or 0), []).append(row_json(r))
        for (protocol, step), found in groups.items():
            self.client.log_dict(self.run_id, json.loads(json.dumps(found, default=str)),
                                 f"metric_rows/{protocol}_step{step}.json")

    def finish(self, status: str) -> None:
        self.client.set_tag(self.run_id, "fqvae.status", status)
        self.client.set_terminated(self.run_id, status=STATUS.get(status, "FINISHED"))

