"""Where a table's numbers came from: the provenance of each cell's runs (the machine, kernel family and
library versions they trained with, and those that computed the metric rows shown), the kernel-family
filter (`fqvae table --kernel-family`), and the footer that names them and says which cells mix
(docs/provenance.md).

A run belongs to a kernel family when every start of its training was recorded in it; a run trained
before fqvae recorded provenance belongs to none ("not recorded"). The filter keeps runs by how they
trained; where their metric rows were computed is reported beside it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from fqvae_cli import provenance as prov
from fqvae_cli.errors import UsageError


class Sources:
    """The provenance of runs in one registry, read once per run: `trained[run id]` lists the records of
    its training starts (hashes, oldest first), `records` maps each hash to its record."""

    def __init__(self, reg: Any):
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
