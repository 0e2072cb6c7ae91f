"""Traversal values per docs/evaluation.md (Figures) and `fqvae models`."""

from __future__ import annotations

import json

import pytest
import torch

from fqvae_cli.errors import ConfigError
from fqvae_cli.models.zoo import ZOO, ModelConfig, build_model


def model_for(name: str, **extra):
    fields = dict(ZOO[name].defaults)
    fields.update(latent_dim=3, width=4, hidden=8, codebook_size=4, n_values=4, disc_width=8)
    fields.update(extra)
    return build_model(ModelConfig.from_flat(name=name, **fields)).eval()


def set_codebook(model, values) -> None:
    with torch.no_grad():
        model.bottleneck.codebook.copy_(torch.as_tensor(values).view_as(model.bottleneck.codebook))


def test_global_scalar_codebook_sweeps_its_min_to_max():
    m = model_for("factorqvae")
    set_codebook(m, [-2.0, 0.5, 3.0, 1.0])
    z = torch.tensor([0.5, 1.0, -2.0])
    for i in range(3):  # the same global range for every latent
        assert torch.allclose(m.traversal_values(i, z), torch.linspace(-2.0, 3.0, 8).unsqueeze(1))


def test_qlae_sweeps_each_latents_own_codebook():
    m = model_for("qlae")
    set_codebook(m, [[0.0, 1.0, 2.0, 3.0], [-1.0, -5.0, 4.0, 0.0], [0.0, 0.1, 0.2, 0.3]])
    z = m.z_from_codes(torch.tensor([[0, 1, 2]]))[0]
    assert torch.equal(z, torch.tensor([0.0, -5.0, 0.2]))
    assert torch.allclose(m.traversal_values(1, z, steps=4), torch.tensor([[-5.0], [-2.0], [1.0], [4.0]]))
    assert torch.allclose(m.traversal_values(2, z, steps=2), torch.tensor([[0.0], [0.3]]))


@pytest.mark.parametrize("name", ["ae", "factorvae"])
def test_continuous_latents_sweep_plus_minus_three(name):
    m = model_for(name)
    z = torch.tensor([0.5, -1.0, 2.0])
    assert torch.allclose(m.traversal_values(1, z, steps=7), torch.arange(-4.0, 3.0).unsqueeze(1), atol=1e-6)


def test_vector_codebook_returns_entries_ordered_along_the_principal_direction():
    m = model_for("vqvae", codebook_dim=2)
    entries = torch.tensor([[2.0, 4.1], [-1.0, -2.0], [0.0, 0.1], [1.0, 1.9]])  # ~ along (1, 2)
    set_codebook(m, entries)
    z = torch.zeros(6)
    vals = m.traversal_values(0, z, steps=4)
    assert torch.equal(vals, entries[[1, 2, 3, 0]])  # every value is a codebook entry, in order
    two = m.traversal_values(0, z, steps=2)
    assert torch.equal(two, entries[[1, 0]])


def test_apply_traversal_replaces_one_latent():
    m = model_for("vqvae", codebook_dim=2)
    z = torch.arange(6.0)
    out = m.apply_traversal(z, 1, torch.tensor([9.0, 8.0]))
    assert torch.equal(out, torch.tensor([0.0, 1.0, 9.0, 8.0, 4.0, 5.0]))
    assert torch.equal(z, torch.arange(6.0))  # a copy
    rows = m.apply_traversal(z, 2, torch.tensor([[7.0, 7.0], [6.0, 6.0]]))
    assert torch.equal(rows, torch.tensor([[0.0, 1, 2, 3, 7, 7], [0.0, 1, 2, 3, 6, 6]]))
    assert m.decode(rows).shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match="out of range"):
        m.traversal_values(3, z)


def test_models_json_lists_the_zoo_with_table_a3(cli):
    r = cli("models", "--json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == list(ZOO)
    by = {row["name"]: row for row in rows}
    fq = by["factorqvae"]
    assert fq["bottleneck"] == "relaxed_codebook" and fq["regularizers"] == ["kl_uniform", "total_correlation"]
    assert fq["encoder_output"] == "d*C" and fq["total_correlation"] and fq["discrete"]
    assert fq["hyperparameters"]["shapes3d"] == {"beta": 1e-3, "gamma": 1e-4}
    assert fq["hyperparameters"]["isaac3d"] == {"beta": 5e-5, "gamma": 5e-5}
    assert fq["hyperparameters"]["mpi3d"] == {"beta": 5e-5, "gamma": 1e-6}
    assert fq["hyperparameters"]["synth3d"] == fq["hyperparameters"]["shapes3d"]
    assert by["bioae"]["hyperparameters"]["isaac3d"] == {"nonneg": 1.0, "activity": 0.1}
    assert by["dvae"]["encoder_output"] == "d*K" and by["betavae"]["encoder_output"] == "2d"
    assert by["ae"]["hyperparameters"]["mpi3d"] == {}
    assert by["vqvae"]["defaults"] == {"codebook_dim": 8}
    assert by["vqvae"]["hyperparameters"]["isaac3d"] is None  # Table 2 is Shapes3D only


def test_models_table(cli):
    r = cli("models")
    assert r.exit_code == 0, r.stderr
    for name in ZOO:
        assert name in r.stdout
    assert "beta=1e-3" in r.stdout and "gamma=1e-4" in r.stdout
