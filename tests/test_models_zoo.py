"""Every zoo model on the compact trunk: one Algorithm 1 step, gradients, save/load, exact eval codes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from fqvae_cli.errors import ConfigError
from fqvae_cli.models.zoo import ZOO, ModelConfig, build_model

D = 3

EXPECTED_PARTS = {
    "ae": {"recon"},
    "betavae": {"recon", "kl"},
    "factorvae": {"recon", "kl", "tc"},
    "bioae": {"recon", "nonneg", "activity"},
    "qlae": {"recon", "quantize", "commit"},
    "dvae": {"recon", "kl"},
    "qvae": {"recon", "kl"},
    "factordvae": {"recon", "kl", "tc"},
    "factorqvae": {"recon", "kl", "tc"},
    "vqvae": {"recon", "kl"},
    "factorvqvae": {"recon", "kl", "tc"},
    "fsq": {"recon"},
    "betatcvae": {"recon", "kl", "tc"},
    "dipvae1": {"recon", "kl", "dip"},
    "dipvae2": {"recon", "kl", "dip"},
    "annealedvae": {"recon", "kl"},
    "tripod": {"recon", "multiinformation", "hessian"},
    "tripod_continuous": {"recon", "multiinformation", "hessian"},
}


def tiny_config(name: str, **extra) -> ModelConfig:
    fields = dict(ZOO[name].defaults)
    fields.update(trunk="compact", image_size=32, latent_dim=D, width=4, hidden=8, codebook_size=8,
                  n_values=5, beta=0.5, gamma=0.5, disc_width=16)
    fields.update(extra)
    return ModelConfig.from_flat(name=name, **fields)


def batch(n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g) - 0.5


def test_the_zoo_has_the_eleven_models_of_the_paper_fsq_and_the_field():
    assert list(ZOO) == list(EXPECTED_PARTS)


@pytest.mark.parametrize("name", list(ZOO))
def test_one_step_gradients_and_save_load(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_config(name)).train()
    spec = model.spec
    x, x_other = batch(4, 0), batch(4, 1)

    total, parts, tc_input = model.training_step_losses(x, 0.7)
    assert set(parts) == EXPECTED_PARTS[name] | {"total"}
    assert torch.isfinite(total)
    assert torch.allclose(total, sum(v for k, v in parts.items() if k != "total"))
    assert not tc_input.requires_grad
    assert model.bottleneck.discrete == spec.discrete  # the module and the zoo read one record
    assert tc_input.shape == (4, D * model.bottleneck.tc_group)

    total.backward()
    for p in model.vae_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    if spec.global_codebook or spec.kind.name == "per_latent_codebook":
        assert model.bottleneck.codebook.grad.abs().sum() > 0
    # the VAE loss leaves the discriminator untouched, so its own step starts clean
    assert all(p.grad is None for p in model.discriminator_parameters())

    if spec.total_correlation:
        vae_grads = [p.grad.clone() for p in model.vae_parameters()]
        d_loss = model.discriminator_loss(tc_input, x_other, 0.7)
        assert torch.isfinite(d_loss)
        d_loss.backward()
        for p in model.discriminator_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
        assert all(torch.equal(a, p.grad) for a, p in zip(vae_grads, model.vae_parameters(), strict=True))
    else:
        assert model.discriminator_parameters() == []
        with pytest.raises(ConfigError, match="no total-correlation discriminator"):
            model.discriminator_loss(tc_input, x_other, 0.7)

    # safetensors round trip into a differently initialized model: identical eval outputs
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    torch.manual_seed(123)
    other = build_model(tiny_config(name))
    other.load_state_dict(load_file(str(path)))
    model.eval()
    other.eval()
    outputs = []
    for m in (model, other):
        torch.manual_seed(5)  # the Gaussian models' codes are reparameterized samples
        codes = m.encode_codes(x)
        z = m.encode_z(x)
        outputs.append((codes, z, m.decode(z).detach()))
    for a, b in zip(*outputs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", [n for n, s in ZOO.items() if s.discrete and s.kind.name not in ("fsq", "fixed_grid")])
def test_eval_codes_are_exact_indices_and_z_is_the_codebook(name):
    torch.manual_seed(1)
    model = build_model(tiny_config(name)).eval()
    x = batch(16, 2)
    codes = model.encode_codes(x)
    z = model.encode_z(x)
    cb = model.bottleneck.codebook.detach()
    assert codes.dtype == torch.long and codes.shape == (16, D)
    n_entries = cb.shape[1] if ZOO[name].kind.name == "per_latent_codebook" else cb.shape[0]
    assert int(codes.min()) >= 0 and int(codes.max()) < n_entries
    if ZOO[name].kind.name == "per_latent_codebook":
        expected = torch.stack([cb[i, codes[:, i]] for i in range(D)], dim=1)
    else:
        expected = cb[codes].reshape(16, -1)
    assert torch.equal(z, expected)  # bit for bit, not approximately
    assert torch.equal(model.z_from_codes(codes), z)
    # the eval assignment is the nearest entry / the most likely one, deterministically
    assert torch.equal(model.encode_codes(x), codes)
    h = model.encoder(x).detach()
    if ZOO[name].kind.name == "gumbel_categorical":
        assert torch.equal(codes, h.view(16, D, -1).argmax(-1))
    elif ZOO[name].kind.name == "per_latent_codebook":
        assert torch.equal(codes, (h.unsqueeze(-1) - cb).abs().argmin(-1))
    else:
        c = cb.shape[1]
        assert torch.equal(codes, torch.cdist(h.view(16 * D, c), cb).argmin(-1).view(16, D))


@pytest.mark.parametrize("name", ["ae", "betavae", "bioae"])
def test_continuous_codes_are_the_decoder_input(name):
    torch.manual_seed(1)
    model = build_model(tiny_config(name, eval_code="mean")).eval()
    x = batch(5, 3)
    h = model.encoder(x).detach()
    codes = model.encode_codes(x)
    assert codes.dtype == torch.float32
    assert torch.equal(codes, h[:, :D])  # identity output, or the Gaussian mean
    assert torch.equal(model.z_from_codes(codes), model.encode_z(x))


def test_build_model_needs_a_latent_size():
    with pytest.raises(ConfigError, match="latent_dim"):
        build_model(ModelConfig.from_flat(name="qvae"))


# A model config as runs stored it before the model settings were composed of component settings.
FLAT_FACTORQVAE = {
    "name": "factorqvae", "trunk": "compact", "image_size": 32, "latent_dim": 12, "width": None, "hidden": 128,
    "codebook_size": 64, "codebook_dim": 1, "distance": "squared", "codebook_init": "normal", "n_values": 16,
    "beta": 0.001, "gamma": 0.0001, "nonneg": 1.0, "activity": 0.01, "quantize": 0.01, "commit": 0.01,
    "disc_width": 256, "disc_layers": 6, "eval_code": "sample",
}


def test_a_flat_stored_model_config_loads_into_the_composed_one():
    from fqvae_cli.config import build_run_config
    from fqvae_cli.experiments import resolve_run_config

    old = ModelConfig.from_flat(**FLAT_FACTORQVAE)
    assert old == resolve_run_config("factorqvae", "synth3d", "quick").model
    assert old.bottleneck.kind == "relaxed_codebook" and old.bottleneck.codebook_size == 64
    assert old.regularizer("total_correlation").disc_width == 256
    assert old.regularizer("kl_uniform").beta == 0.001
    # the settings the flat form held for other models' components (n_values, nonneg...) are dropped
    stored = old.model_dump(mode="json")
    assert stored["bottleneck"] == {"kind": "relaxed_codebook", "codebook_size": 64, "codebook_dim": 1,
                                    "distance": "squared", "codebook_init": "normal"}
    assert stored["regularizers"] == [{"kind": "kl_uniform", "beta": 0.001},
                                      {"kind": "total_correlation", "gamma": 0.0001, "disc_width": 256,
                                       "disc_layers": 6}]
    # a whole stored run config too, and the nested form round-trips
    run = build_run_config({"model": dict(FLAT_FACTORQVAE, name="qlae"), "dataset": "synth3d"})
    assert run.model.bottleneck.n_values == 16 and run.model.regularizer("quantize_commit").commit == 0.01
    assert ModelConfig.model_validate(run.model.model_dump(mode="json")) == run.model


def test_settings_are_checked_where_they_belong():
    from fqvae_cli.config import build_run_config

    with pytest.raises(ConfigError, match=r"invalid value for 'model.codebook_size'"):
        build_run_config({"model": {"name": "qvae", "codebook_size": 1}})
    with pytest.raises(ConfigError, match=r"unknown setting 'model.codebok_size'"):
        build_run_config({"model": {"name": "qvae", "codebok_size": 8}})
    # a setting of another model's component is ignored, as profiles set disc_width for every model
    assert build_run_config({"model": {"name": "ae", "disc_width": 8}}).model.regularizers == []


@pytest.mark.parametrize("name", list(ZOO))
def test_the_kind_record_gives_the_encoder_width_the_module_expects(name):
    cfg = tiny_config(name)
    model = build_model(cfg)
    b, kind = model.bottleneck, ZOO[name].kind
    k = getattr(b, "n_entries", getattr(b, "n_values", getattr(b, "levels", 1)))
    assert b.enc_dim == kind.encoder_width(D, k, b.value_dim)
    assert model.encoder(batch(2)).shape == (2, b.enc_dim)


@pytest.mark.parametrize("name", list(ZOO))
def test_one_step_on_the_paper_trunk(name):
    """Every model of the zoo builds on the Appendix A.3 trunk at 64x64 and takes a training step with a
    finite loss and finite gradients (narrow widths: the trunk's shape, not its size)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_flat(name=name, trunk="paper", image_size=64, latent_dim=4, width=8,
                                              hidden=8))
    x = torch.rand(4, 3, 64, 64) - 0.5
    total, parts, _ = model.training_step_losses(x, 0.7)
    assert set(parts) == EXPECTED_PARTS[name] | {"total"} and torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.vae_parameters())
