"""What the registry hands out and takes in: frozen records that map themselves from table rows,
`MetricRow`, one metric value to log, `ArtifactRow`, one file to record, and `StartRow`, one start of a
run's training. A provenance record (fqvae_cli/provenance.py) is a JSON dict stored once and named by
the sha256 of its canonical text (`provenance_key`); records carry that hash.

Callers never see ORM objects, so nothing outside the store holds a session or triggers lazy SQL."""

from __future__ import annotations

import hashlib
import json
import math
import operator
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from fqvae_cli.errors import RegistryError, UsageError

# A provenance record is a few hundred bytes; anything near this is not one.
PROVENANCE_LIMIT = 64_000
# value_text encodings; SQLite also folds -0.0 into 0, so the sign of zero is kept here too.
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-0": -0.0}


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def opt_text(value: Any, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise UsageError(f"{what} must be a non-empty string of at most {limit} characters, not {value!r}.")
    return value


def opt_int(value: Any, what: str) -> int | None:
    """An integer column's value: a 64-bit integer (what SQLite and PostgreSQL store) or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"{what} must be an integer, not {value!r}.")
    try:
        number = operator.index(value)
    except TypeError as exc:
        raise UsageError(f"{what} must be an integer, not {value!r}.") from exc
    if not -(2 ** 63) <= number < 2 ** 63:
        raise UsageError(f"{what} must be an integer between {-(2 ** 63):,} and {2 ** 63 - 1:,}, not {number:,}.")
    return number


def encode_value(value: Any) -> tuple[float | None, str | None]:
    """(value, value_text) columns of a metric value; see schema.py for why both exist."""
    if isinstance(value, (bool, str, bytes)):
        raise UsageError(f"metric value {value!r} is not a number.")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metric value {value!r} is not a number.") from exc
    if math.isnan(v):
        return None, "nan"
    if math.isinf(v):
        return None, "inf" if v > 0 else "-inf"
    if v == 0.0 and math.copysign(1.0, v) < 0:
        return 0.0, "-0"
    return v, None


def decode_value(value: float | None, text: str | None) -> float:
    if text is not None:
        return _SPECIAL[text]
    return math.nan if value is None else float(value)


def provenance_key(details: Any) -> tuple[str, str]:
    """(canonical JSON text, its sha256) of a provenance record: the same facts give the same key."""
    if not isinstance(details, dict) or not details:
        raise UsageError(f"a provenance record is a non-empty JSON object, not {details!r}.")
    try:
        text = json.dumps(details, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"a provenance record must be plain JSON ({exc}).") from exc
    if len(text) > PROVENANCE_LIMIT:
        raise UsageError(f"a provenance record of {len(text):,} characters is too large to be one.")
    return text, hashlib.sha256(text.encode()).hexdigest()


def _jsonable(record: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(record).items()}


class _FromRow:
    """Records built from a row of their table: columns of the same name, times as UTC, and the
    per-record conversions in `_convert` (JSON text, encoded values)."""

    @classmethod
    def _convert(cls, m: Any) -> dict[str, Any]:
        return {}

    @classmethod
    def from_row(cls, row: Any) -> Any:
        m = row._mapping
        values = {f.name: m[f.name] for f in fields(cls) if f.name in m}  # type: ignore[arg-type]
        for key, value in values.items():
            if isinstance(value, datetime):
                values[key] = utc(value)
        values.update(cls._convert(m))
        return cls(**values)


class DamagedRow(RegistryError):
    """A run row that cannot be read (its config edited by hand into invalid JSON, say): listing commands
    skip it with a warning that names it, and `fqvae runs delete` can still remove it."""

    def __init__(self, m: Any, why: str):
        self.run_id, self.short_id, self.status, self.why = m["id"], m["short_id"], m["status"], why
        super().__init__(f"run {self.short_id} has a damaged registry row ({why}); remove it with "
                         f"`fqvae runs delete {self.short_id} --yes`.")


@dataclass(frozen=True)
class RunRecord(_FromRow):
    id: str
    short_id: str
    name: str | None
    model: str
    dataset: str
    profile: str
    seed: int
    status: str
    config: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    host: str | None
    device: str | None
    version: str | None
    code_revision: str | None
    error: str | None
    worker: str | None
    # The prepared dataset the run was trained on (dataset_fingerprint() of fqvae_cli.data.identity);
    # None for runs recorded before schema 0003 or queued runs not started yet.
    dataset_fingerprint: dict | None = None

    @classmethod
    def _convert(cls, m: Any) -> dict[str, Any]:
        fp = m["dataset_fingerprint"] if "dataset_fingerprint" in m else None
        out = {}
        for key, text in (("config", m["config"]), ("dataset_fingerprint", fp)):
            try:
                out[key] = json.loads(text) if text or key == "config" else None
            except (TypeError, ValueError, RecursionError) as exc:
                raise DamagedRow(m, f"its {key.replace('_', ' ')} is not JSON: {str(exc)[:80]}") from None
            if key == "config" and not isinstance(out[key], dict):
                raise DamagedRow(m, "its config is not a JSON object")
        return out


    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 UTC strings)."""
        return _jsonable(self)


@dataclass(frozen=True)
class MetricRow:
    """One metric value to log: a name and a number, optionally at a step, of a split, under a protocol
    (None for training losses), and what computed it (a provenance record; None: not recorded, or the
    one given to log_metrics)."""

    name: str
    value: float
    step: int | None = None
    split: str | None = None
    protocol: str | None = None
    provenance: dict | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if opt_text(self.name, "metric name", 128) is None:
            raise UsageError("a metric row needs a name.")
        encode_value(self.value)
        opt_int(self.step, "metric step")
        opt_text(self.split, "split", 32)
        opt_text(self.protocol, "protocol", 64)
        if self.provenance is not None:
            provenance_key(self.provenance)

    def params(self, run_id: str) -> dict[str, Any]:
        """The columns of this row in the metrics table."""
        number, text = encode_value(self.value)
        return {"run_id": run_id, "name": self.name, "value": number, "value_text": text,
                "step": opt_int(self.step, "metric step"), "split": self.split, "protocol": self.protocol}


@dataclass(frozen=True)
class MetricRecord(_FromRow):
    id: int
    run_id: str
    name: str
    value: float
    step: int | None
    split: str | None
    protocol: str | None
    # The sha256 of the provenance record that computed it (Registry.provenance gives the record);
    # None for rows recorded before provenance existed.
    provenance: str | None = None

    @classmethod
    def _convert(cls, m: Any) -> dict[str, Any]:
        return {"value": decode_value(m["value"], m["value_text"])}

    @property
    def key(self) -> str:
        """`protocol:name@split`, leaving out the parts that are unset; the column name in exports."""
        key = f"{self.protocol}:{self.name}" if self.protocol else self.name
        return f"{key}@{self.split}" if self.split else key

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactRow:
    """One file to record for a run: its kind (checkpoint, figure, ...), path, size and sha256, optionally
    the step it belongs to and when it was made (None: now)."""

    kind: str
    path: str
    bytes: int
    sha256: str
    step: int | None = None
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        opt_text(self.kind, "artifact kind", 32)
        if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise UsageError(f"sha256 must be 64 lowercase hex digits, not {self.sha256!r}.")
        size = opt_int(self.bytes, "artifact size")
        if size is None or size < 0:
            raise UsageError(f"artifact size must be a non-negative integer, not {self.bytes!r}.")
        opt_int(self.step, "artifact step")
        if self.created_at is not None and not isinstance(self.created_at, datetime):
            raise UsageError(f"an artifact's creation time must be a datetime, not {self.created_at!r}.")

    def params(self, run_id: str) -> dict[str, Any]:
        """The columns of this row in the artifacts table, but for created_at."""
        return {"run_id": run_id, "kind": self.kind, "path": str(self.path), "bytes": opt_int(self.bytes, "size"),
                "sha256": self.sha256, "step": opt_int(self.step, "artifact step")}


@dataclass(frozen=True)
class ArtifactRecord(_FromRow):
    id: int
    run_id: str
    kind: str
    path: str
    bytes: int
    sha256: str
    step: int | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return _jsonable(self)


@dataclass(frozen=True)
class StartRow:
    """One start of a run's training to record: what it trained with, the iteration it started from, the
    host, and when (None: now)."""

    provenance: dict
    step: int | None = None
    host: str | None = None
    started_at: datetime | None = None

    def __post_init__(self) -> None:
        provenance_key(self.provenance)
        opt_int(self.step, "start step")
        opt_text(self.host, "host", 255)
        if self.started_at is not None and not isinstance(self.started_at, datetime):
            raise UsageError(f"a start time must be a datetime, not {self.started_at!r}.")


@dataclass(frozen=True)
class StartRecord(_FromRow):
    """A recorded start: the run, the iteration it started from, host, time, and the sha256 of the
    provenance record it trained with."""

    id: int
    run_id: str
    step: int | None
    host: str | None
    started_at: datetime
    provenance: str

    def to_json(self) -> dict[str, Any]:
        return _jsonable(self)
