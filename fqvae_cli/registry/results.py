"""Metric rows, artifacts and provenance of runs: the half of the store that records results, and what
computed them (each distinct provenance record stored once, rows refer to it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select

from fqvae_cli.errors import NotFoundError, UsageError
from fqvae_cli.registry.base import ARTIFACTS, METRICS, PROVENANCE, STARTS, Connection
from fqvae_cli.registry.records import (
    ArtifactRecord,
    ArtifactRow,
    MetricRecord,
    MetricRow,
    StartRecord,
    provenance_key,
)

# Metric rows with the sha256 of the provenance record that computed them (NULL: not recorded).
_METRIC_ROWS = select(METRICS, PROVENANCE.c.sha256.label("provenance")).select_from(
    METRICS.outerjoin(PROVENANCE, METRICS.c.provenance_id == PROVENANCE.c.id))


class Results(Connection):
    # -- metrics ------------------------------------------------------------------------------------

    def log_metrics(self, run_id: str, rows: Sequence[MetricRow], provenance: dict | None = None) -> int:
        """Append metric rows in one transaction: all are stored or none. Returns the number stored.
        `provenance`: what computed them (fqvae_cli.provenance.collect), for rows that do not carry their
        own. (Plain tuples in MetricRow's field order are read as MetricRows.)"""
        checked = []
        for row in rows:
            if not isinstance(row, MetricRow):
                if not isinstance(row, tuple) or not 2 <= len(row) <= 5:
                    raise UsageError(f"a metric row is a MetricRow(name, value, step, split, protocol), not {row!r}.")
                row = MetricRow(*row)
            checked.append((row.params(run_id), row.provenance if row.provenance is not None else provenance))
        if not checked:
            return 0
        digests = [None if p is None else provenance_key(p)[1] for _, p in checked]

        def fn(conn: Any) -> int:
            self._get(conn, run_id)
            ids = self._provenance_ids(conn, [p for _, p in checked])
            conn.execute(insert(METRICS), [{**params, "provenance_id": None if d is None else ids[d]}
                                           for (params, _), d in zip(checked, digests, strict=True)])
            return len(checked)

        return self._tx(fn, write=True)

    def metrics(self, run_id: str, *, protocol: str | None = None, name: str | None = None,
                split: str | None = None) -> list[MetricRecord]:
        """Every metric row of a run in logging order, optionally filtered."""
        stmt = _METRIC_ROWS.where(METRICS.c.run_id == run_id)
        for col, value in (("protocol", protocol), ("name", name), ("split", split)):
            if value is not None:
                stmt = stmt.where(METRICS.c[col] == value)
        return self._tx(lambda conn: [MetricRecord.from_row(r) for r in conn.execute(stmt.order_by(METRICS.c.id))],
                        write=False)

    def latest_metric_records(self, run_ids: Sequence[str]) -> list[MetricRecord]:
        """For each run, the last logged row of every (protocol, split, name)."""
        ids = list(dict.fromkeys(run_ids))

        def fn(conn: Any) -> list[MetricRecord]:
            out: list[MetricRecord] = []
            for i in range(0, len(ids), 500):
                last = (select(func.max(METRICS.c.id)).where(METRICS.c.run_id.in_(ids[i:i + 500]))
                        .group_by(METRICS.c.run_id, METRICS.c.protocol, METRICS.c.split, METRICS.c.name))
                rows = conn.execute(_METRIC_ROWS.where(METRICS.c.id.in_(last)).order_by(METRICS.c.id))
                out.extend(MetricRecord.from_row(r) for r in rows)
            return out

        return self._tx(fn, write=False)

    def latest_metrics(self, run_id: str, protocol: str | None, *, split: str | None = None) -> dict[str, float]:
        """{name: value} of the last row of each metric name logged under `protocol` (None: rows logged
        without a protocol, e.g. training losses), optionally of one split."""
        latest = {}
        for m in self.latest_metric_records([run_id]):
            if m.protocol == protocol and (split is None or m.split == split):
                latest[m.name] = m  # ids ascend, so a later split row of the same name wins
        return {name: m.value for name, m in latest.items()}

    # -- provenance ---------------------------------------------------------------------------------

    def provenance(self, digests: Sequence[str]) -> dict[str, dict]:
        """{sha256: record} of the provenance records with these hashes (unknown ones are left out)."""
        wanted = sorted({d for d in digests if d})

        def fn(conn: Any) -> dict[str, dict]:
            out: dict[str, dict] = {}
            for i in range(0, len(wanted), 500):
                stmt = select(PROVENANCE.c.sha256, PROVENANCE.c.details).where(
                    PROVENANCE.c.sha256.in_(wanted[i:i + 500]))
                out.update((row.sha256, json.loads(row.details)) for row in conn.execute(stmt))
            return out

        return self._tx(fn, write=False) if wanted else {}

    def starts(self, run_ids: Sequence[str]) -> list[StartRecord]:
        """Every recorded start of these runs' training, in the order they happened (by id)."""
        ids = list(dict.fromkeys(run_ids))
        base = select(STARTS, PROVENANCE.c.sha256.label("provenance")).select_from(
            STARTS.join(PROVENANCE, STARTS.c.provenance_id == PROVENANCE.c.id))

        def fn(conn: Any) -> list[StartRecord]:
            out: list[StartRecord] = []
            for i in range(0, len(ids), 500):
                rows = conn.execute(base.where(STARTS.c.run_id.in_(ids[i:i + 500])).order_by(STARTS.c.id))
                out.extend(StartRecord.from_row(r) for r in rows)
            return sorted(out, key=lambda s: s.id)

        return self._tx(fn, write=False) if ids else []

    # -- artifacts ----------------------------------------------------------------------------------

    def add_artifact(self, run_id: str, *, kind: str, path: str | Path, bytes: int, sha256: str,
                     step: int | None = None) -> ArtifactRecord:
        values = ArtifactRow(kind, str(path), bytes, sha256, step).params(run_id)

        def fn(conn: Any) -> ArtifactRecord:
            self._get(conn, run_id)
            new_id = conn.execute(insert(ARTIFACTS).values(**values, created_at=self._now())
                                  .returning(ARTIFACTS.c.id)).scalar_one()
            return ArtifactRecord.from_row(conn.execute(select(ARTIFACTS).where(ARTIFACTS.c.id == new_id)).one())

        return self._tx(fn, write=True)

    def remove_artifact(self, artifact_id: int) -> None:
        def fn(conn: Any) -> None:
            if conn.execute(delete(ARTIFACTS).where(ARTIFACTS.c.id == artifact_id)).rowcount == 0:
                raise NotFoundError(f"no artifact with id {artifact_id} in {self.display_url}.")

        self._tx(fn, write=True)

    def artifacts(self, run_id: str, kind: str | None = None) -> list[ArtifactRecord]:
        stmt = select(ARTIFACTS).where(ARTIFACTS.c.run_id == run_id)
        if kind is not None:
            stmt = stmt.where(ARTIFACTS.c.kind == kind)
        return self._tx(lambda conn: [ArtifactRecord.from_row(r) for r in conn.execute(stmt.order_by(ARTIFACTS.c.id))],
                        write=False)

