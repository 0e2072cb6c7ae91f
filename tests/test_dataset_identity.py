"""A run meets other data: the refusal names the fields that differ, even where the two datasets read alike
(a renderer version is not part of the short description)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fqvae_cli.data.identity import fingerprint_differences, require_same_dataset
from fqvae_cli.errors import DataError


def _fp(version: int) -> dict:
    return {"name": "synth3d", "n_images": 648, "image_size": 32, "factor_sizes": [3, 3, 3, 2, 4, 3],
            "source": {"grid": "small", "renderer_version": version}}


def test_differences_name_each_field_with_both_values():
    assert fingerprint_differences(_fp(1), _fp(2)) == "source.renderer_version is 2 here, 1 in the run's record"
    assert fingerprint_differences(_fp(1), {**_fp(1), "n_images": 9}) == "n_images is 9 here, 648 in the run's record"


def test_resume_on_a_dataset_that_reads_alike_names_the_field(monkeypatch):
    import fqvae_cli.data.identity as identity

    monkeypatch.setattr(identity, "dataset_fingerprint", lambda ds: _fp(2))
    run = SimpleNamespace(short_id="abcd1234", dataset_fingerprint=_fp(1))
    with pytest.raises(DataError) as err:
        require_same_dataset(run, SimpleNamespace(path="/data/synth3d"), "resume")
    msg = str(err.value)
    assert "source.renderer_version is 2 here, 1 in the run's record" in msg and msg.count("\n") == 0
