"""Portable run bundles: runs trained on one machine, studied on another (docs/bundles.md).

A bundle is a plain tar of regular files: `manifest.json`, then `runs/<run id>/<path in the run folder>`
for each run (the last complete checkpoint, weights and state, or every kept one; metric matrices; figures,
those written outside the run folder under `external/`; config.json). The manifest holds the format
version, the registry schema revision, the fqvae version, the run rows (full config, dataset fingerprint),
their metric rows with protocols, the starts of their training, the provenance records both name by hash
(what computed them; none in a format-1 bundle), their artifact rows with paths relative to the run
folder, and the sha256 and size of every file.

export.py writes one (every file verified against its registry row first); read.py opens one without
trusting it (member names and types, manifest, versions, configs, sizes and hashes, before anything is
written); validate.py says which files the format carries and reads each by its kind; install.py checks
it against this workspace and records it (free space, files first, rows in one transaction, files
removed if the rows fail; hidden folders of killed imports removed)."""

from fqvae_cli.bundle.export import Exported, export_bundle
from fqvae_cli.bundle.install import Installed, install_bundle
from fqvae_cli.bundle.read import Bundle, RunPlan, open_bundle

__all__ = ["Bundle", "Exported", "Installed", "RunPlan", "export_bundle", "install_bundle", "open_bundle"]
