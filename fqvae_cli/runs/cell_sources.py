"""What a table cell rests on: which runs it holds (the runs of its exact training setup), the runs of that
setup it leaves out and why, and where its numbers came from: the provenance of each cell's runs (the
machine, kernel family and library versions they trained with, and those that computed the metric rows
shown), the kernel-family filter (`fqvae table --kernel-family`), and the footer that names them and says
which cells mix (docs/provenance.md).

A run belongs to a kernel family when every start of its training was recorded in it; a run trained
before fqvae recorded provenance belongs to none ("not recorded"). The filter keeps runs by how they
trained; where their metric rows were computed is reported beside it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fqvae_cli import provenance as prov
from fqvae_cli.config import build_run_config, runtime_only
from fqvae_cli.data.identity import dataset_fingerprint
from fqvae_cli.data.store import PreparedDataset, dataset_dir, is_prepared
from fqvae_cli.errors import ConfigError, FqvaeError, UsageError
from fqvae_cli.experiments import deep_merge, resolve_run_config
from fqvae_cli.registry.lifecycle import FAILED, INTERRUPTED

if TYPE_CHECKING:
    from fqvae_cli.registry.store import Registry


class Sources:
    """The provenance of runs in one registry, read once per run: `trained[run id]` lists the records of
    its training starts (hashes, oldest first), `records` maps each hash to its record."""

    def __init__(self, reg: Registry):
        self.reg = reg
        self.trained: dict[str, list[str]] = {}
        self.records: dict[str, dict] = {}

    def load(self, runs: Sequence[Any]) -> None:
        todo = [r.id for r in runs if r.id not in self.trained]
        if not todo:
            return
        for run_id in todo:
            self.trained[run_id] = []
        for start in self.reg.starts(todo):
            self.trained[start.run_id].append(start.provenance)
        self._learn([h for run_id in todo for h in self.trained[run_id]])

    def _learn(self, digests: Sequence[str | None]) -> None:
        wanted = {d for d in digests if d and d not in self.records}
        if wanted:
            self.records.update(self.reg.provenance(sorted(wanted)))

    def families(self, run: Any) -> set[str]:
        """The kernel families a run trained in ({'not recorded'} without a recorded start)."""
        found = {prov.kernel_family(self.records.get(h)) for h in self.trained.get(run.id, [])}
        return found or {prov.NOT_RECORDED}

    def keep(self, runs: Sequence[Any], family: str) -> list[Any]:
        """The runs trained entirely in kernel family `family`."""
        self.load(runs)
        return [r for r in runs if self.families(r) == {family}]

    def scored(self, run: Any, protocol: str, columns: Sequence[str]) -> list[str | None]:
        """The provenance hashes of the metric rows a table shows for a run (None: not recorded)."""
        rows = [m for m in self.reg.latest_metric_records([run.id]) if m.protocol == protocol and m.name in columns]
        self._learn([m.provenance for m in rows])
        return sorted({m.provenance for m in rows}, key=lambda h: h or "")


def check_family(family: str, sources: Sources, runs: Sequence[Any]) -> None:
    """Refuse a kernel family none of the table's candidate runs trained in, naming those they did."""
    sources.load(runs)
    present = Counter(f for r in runs for f in sources.families(r))
    if family not in present:
        listed = ", ".join(f"{f} ({n} run{'s' if n > 1 else ''})" for f, n in sorted(present.items())) or "no runs"
        raise UsageError(f"no run of this table trained in kernel family '{family}'; its runs trained in: {listed}.")


def cell_families(cell: Any, records: dict[str, dict]) -> list[str]:
    """The kernel families a cell's runs trained in, sorted ('not recorded' for a run without starts)."""
    return sorted({prov.kernel_family(records.get(h)) for s in cell.runs for h in cell.trained_on.get(s) or [None]})


def _runs_word(ids: Sequence[str]) -> str:
    return f"run{'s' if len(ids) > 1 else ''} {', '.join(ids)}"


def _by(label: Any, per_run: dict[str, list[str | None]], records: dict[str, dict]) -> dict[str, list[str]]:
    """{label of a record: the runs (short ids) with a row computed by a record of that label}."""
    out: dict[str, list[str]] = {}
    for short, digests in per_run.items():
        for text in sorted({label(records.get(d) if d else None) for d in (digests or [None])}):
            out.setdefault(text, []).append(short)
    return out


def footer_lines(cells: dict[str, Any], records: dict[str, dict], family: str | None = None,
                 left_out: int = 0) -> list[str]:
    """The footer of a table whose cells (`name -> cell` with `trained_on` and `scored_on`, each `run short
    id -> provenance hashes`) came from `records`: where they trained and were scored, and which cells mix
    kernel families or library versions."""
    trained = {s: h for c in cells.values() for s, h in c.trained_on.items()}
    scored = {s: h for c in cells.values() for s, h in c.scored_on.items()}
    if not trained:
        return []
    if not any(trained.values()) and not any(h for hs in scored.values() for h in hs):
        return [f"Provenance: {prov.NOT_RECORDED} (these runs are from before fqvae recorded it; "
                "docs/provenance.md)."]
    lines = []
    if family is not None:
        lines.append(f"Only runs trained in kernel family {family}"
                     + (f"; {left_out} run(s) of other kernel families or without provenance left out." if left_out
                        else "."))
    train_on, score_on = _by(prov.summary, trained, records), _by(prov.summary, scored, records)
    same = set(train_on) == set(score_on)
    for what, groups in ((("Trained and scored on", train_on),) if same else
                         (("Trained on", train_on), ("Scored on", score_on))):
        for text, ids in sorted(groups.items()):
            n = f"{len(ids)} run{'s' if len(ids) > 1 else ''}"
            lines.append(f"{what}: {text} ({n}" + (", from before fqvae recorded provenance)."
                                                    if text == prov.NOT_RECORDED else ")."))
    mixed = []
    for name, cell in cells.items():
        by_training = _by(prov.kernel_family, cell.trained_on, records)
        by_scoring = _by(prov.kernel_family, cell.scored_on, records)
        by_versions = _by(prov.versions, {s: cell.trained_on.get(s, []) + cell.scored_on.get(s, [])
                                          for s in cell.trained_on}, records)
        for what, groups in (("mixes kernel families in training", by_training),
                             ("was scored in several kernel families", {} if by_scoring == by_training else by_scoring),
                             ("mixes library versions", by_versions)):
            if len(groups) > 1:
                mixed.append(f"{name} {what}: " + "; ".join(f"{text} ({_runs_word(ids)})"
                                                            for text, ids in sorted(groups.items())) + ".")
    lines += mixed or ["No cell mixes kernel families or library versions."]
    lines.append("Runs agree to the last digit only within one kernel family, thread count and library versions "
                 "(docs/provenance.md).")
    return lines


# The runs a table cell leaves out, and why, so that no run vanishes from a table unsaid.
# 
# A cell averages the newest scored run of each seed among the finished runs of its training setup
# (tables.py). The other runs of that setup are named beside the cell: failed runs (a non-finite loss, a
# crash), interrupted ones (resume them to count them), finished runs not evaluated with the table's
# protocol, and older runs of a seed that a newer run replaces. Runs left out by `--kernel-family` are
# counted in the footer (above).

UNSCORED, OLDER = "not evaluated", "older"
REASONS = (FAILED, INTERRUPTED, UNSCORED, OLDER)


def left_out(setup: list[Any], scored: list[Any], kept: list[Any], stopped: list[Any]) -> dict[str, list[str]]:
    """reason -> short ids of a cell's runs that its numbers leave out: `stopped` runs of its setup by
    status, finished runs of its `setup` not `scored` with the protocol, and runs `kept` (scored, in the
    kernel family) that are not the newest of their seed (runs come oldest first)."""
    scored_ids, counted_ids = {r.id for r in scored}, {r.id for r in {r.seed: r for r in kept}.values()}
    out = {FAILED: [r.short_id for r in stopped if r.status == FAILED],
           INTERRUPTED: [r.short_id for r in stopped if r.status == INTERRUPTED],
           UNSCORED: [r.short_id for r in setup if r.id not in scored_ids],
           OLDER: [r.short_id for r in kept if r.id not in counted_ids]}
    return {k: v for k, v in out.items() if v}


def sentences(reasons: dict[str, list[str]], protocol: str) -> list[str]:
    """['1 failed run not counted: b78c82b1', ...] for one cell."""
    words = {FAILED: ("failed run", ""), INTERRUPTED: ("interrupted run", " (resume it to count it)"),
             UNSCORED: ("finished run", f" (not evaluated with protocol {protocol})"),
             OLDER: ("older run", " (a newer run of its seed counts)")}
    out = []
    for reason in REASONS:
        ids = reasons.get(reason, [])
        if ids:
            label, why = words[reason]
            out.append(f"{len(ids)} {label}{'s' if len(ids) != 1 else ''} not counted{why}: {', '.join(ids)}")
    return out


def note(reasons: dict[str, list[str]], protocol: str) -> str:
    """The runs one cell leaves out, as one line ('' when it leaves none out)."""
    return "; ".join(sentences(reasons, protocol))


def uncounted_lines(t: Any) -> list[str]:
    """One line per cell that leaves runs out: 'synth3d / FactorQVAE: 1 failed run not counted: b78c82b1'."""
    labels = dict(t.rows)
    return [f"{MARK} {ds} / {labels[key]}: {note(t.cells[(ds, key)].uncounted, t.protocol)}" for ds in t.datasets
            for key, _ in t.rows if t.cells[(ds, key)].uncounted]


MARK = "†"  # beside a cell's seed count when the cell leaves runs out


def seeds_text(cell: Any) -> str:
    """A cell's seed count, marked when the cell leaves runs out (the lines below the table say which)."""
    return f"{cell.n}{MARK}" if cell.uncounted else str(cell.n)


# Which runs a cell holds: those whose whole training setup equals the cell's (tables.py says why).

def training_setup(config: Any) -> dict | None:
    """What defines a trained model, from a RunConfig or a stored config dict (defaults filled in by
    validating it with today's code); None when today's code cannot read the stored config."""
    if isinstance(config, dict):
        try:
            config = build_run_config(config)
        except ConfigError:
            return None
    data = config.model_dump(mode="json")
    train = {k: v for k, v in data["train"].items() if not runtime_only(k)}
    return {"model": data["model"], "train": train, "dataset": data["dataset"], "profile": data["profile"]}


def expected_setup(model: str, dataset: str, profile: str, row_set: dict, overrides: dict | None = None) -> dict:
    """The training setup of a cell: the profile's, for this row, with any command-line overrides."""
    extra = deep_merge(overrides or {}, {"model": dict(row_set)})
    return training_setup(resolve_run_config(model, dataset, profile, 0, extra))


def dataset_identity(dataset: str) -> dict | None:
    """The fingerprint of the prepared dataset of this name, or None when it is not prepared here."""
    if not is_prepared(dataset):
        return None
    try:
        return dataset_fingerprint(PreparedDataset(dataset_dir(dataset)))
    except FqvaeError:
        return None


def cell_runs(runs: list[Any], model: str, want: dict, identity: dict | None = None) -> list[Any]:
    """The runs of a cell: this model with exactly the cell's training setup, trained on the prepared
    dataset `identity` where both it and the run's record are known."""
    out = []
    for r in runs:
        if r.model != model or training_setup(r.config) != want:
            continue
        if identity is not None and r.dataset_fingerprint is not None and r.dataset_fingerprint != identity:
            continue
        out.append(r)
    return out


def one_per_seed(runs: list[Any]) -> list[Any]:
    """The newest run of each seed, in seed order (runs come oldest first)."""
    latest = {r.seed: r for r in runs}
    return [latest[s] for s in sorted(latest)]
