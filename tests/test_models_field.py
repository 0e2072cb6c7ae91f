"""The field's models beside the paper's (beta-TCVAE, DIP-VAE-I/II, AnnealedVAE): each loss term on
hand-computed inputs, their Bernoulli reconstruction, and the iteration count AnnealedVAE's capacity
follows. Agreement with disentanglement_lib's own functions: benchmarks/reference_models.py."""

from __future__ import annotations

import math

import pytest
import torch

from fqvae_cli.models.capacity import Capacity
from fqvae_cli.models.dip import DIP, covariance, dip_penalty
from fqvae_cli.models.minibatch_tc import MinibatchTC, total_correlation
from fqvae_cli.models.zoo import ZOO, ModelConfig, build_model

MU = torch.tensor([[0.0, 0.0], [2.0, 2.0], [1.0, -2.0]])


def test_the_covariance_of_the_means_is_the_biased_one():
    # mean (1, 0); E[mu mu^T] = [[5, 2], [2, 8]] / 3; minus [[1, 0], [0, 0]]
    assert torch.allclose(covariance(MU), torch.tensor([[2 / 3, 2 / 3], [2 / 3, 8 / 3]]))


def test_dip_penalties_by_hand():
    logvar = torch.log(torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 4.0]]))  # E[Sigma] = diag(1, 2)
    # I: off-diagonal 2 * (2/3)^2 = 8/9 (x lambda_od 1); diagonal (2/3 - 1)^2 + (8/3 - 1)^2 = 26/9 (x 2)
    assert dip_penalty(MU, logvar, "i", 1.0, 2.0).item() == pytest.approx(8 / 9 + 52 / 9, rel=1e-6)
    # II: diagonal 5/3 and 14/3: (2/3)^2 + (11/3)^2 = 125/9 (x 2)
    assert dip_penalty(MU, logvar, "ii", 1.0, 2.0).item() == pytest.approx(8 / 9 + 250 / 9, rel=1e-6)
    # the regularizer: KL (summed over latents, mean over the batch) plus the penalty, lambda_d = factor x od
    parts = DIP(lambda_od=1.0, lambda_d_factor=2.0)({"mu": MU, "logvar": logvar})
    kl = (0.5 * (MU.pow(2) + logvar.exp() - 1 - logvar)).sum(1).mean()
    assert parts["dip"].item() == pytest.approx(60 / 9, rel=1e-6) and torch.equal(parts["kl"], kl)


def test_minibatch_weighted_total_correlation_by_hand():
    # unit variances, z = mu, the two means sqrt(2 ln 2) apart in each latent: exp(-d^2/2) = 1/2 per
    # latent, 1/4 for both; per sample log(1 + 1/4) - 2 log(1 + 1/2) = log(5/9), the 2 pi terms cancel
    a = math.sqrt(2 * math.log(2))
    mu = torch.tensor([[0.0, 0.0], [a, a]])
    tc = total_correlation(mu, mu, torch.zeros(2, 2))
    assert tc.item() == pytest.approx(math.log(5 / 9), rel=1e-6)
    parts = MinibatchTC(beta=6.0)({"z": mu, "mu": mu, "logvar": torch.zeros(2, 2)})
    assert parts["tc"].item() == pytest.approx(5 * math.log(5 / 9), rel=1e-6)
    assert parts["kl"].item() == pytest.approx(0.5 * 2 * a * a / 2, rel=1e-6)  # 0.5 * sum mu^2, mean of 2


def test_annealed_capacity_follows_the_updates_made():
    stats = {"mu": torch.tensor([[3.0, 4.0]]), "logvar": torch.zeros(1, 2)}  # KL = 12.5
    term = Capacity(gamma=1000.0, c_max=25.0, iteration_threshold=100)
    assert term({**stats, "iteration": torch.tensor(40)})["kl"].item() == pytest.approx(2500.0)  # C = 10
    assert term({**stats, "iteration": torch.tensor(200)})["kl"].item() == pytest.approx(12500.0)  # C = 25


def tiny(name: str, **extra) -> ModelConfig:
    fields = {**ZOO[name].defaults, "latent_dim": 3, "width": 4, "hidden": 8, **extra}
    return ModelConfig.from_flat(name=name, **fields)


def test_the_model_counts_its_updates_in_its_weights():
    torch.manual_seed(0)
    model = build_model(tiny("annealedvae", c_max=5.0, iteration_threshold=2)).train()
    x = torch.rand(4, 3, 32, 32) - 0.5
    seen = []
    for _ in range(3):
        seen.append(int(model.bottleneck.iteration))
        model.training_step_losses(x, 1.0)
    assert seen == [0, 1, 2] and model.state_dict()["bottleneck.iteration"].item() == 3
    # models without a scheduled term have no such entry: their checkpoints keep their names
    assert not any("iteration" in k for k in build_model(tiny("betavae")).state_dict())


def test_bernoulli_reconstruction_and_decoding():
    model = build_model(tiny("dipvae1"))
    assert model.cfg.reconstruction == "bernoulli" and ZOO["betavae"].defaults == {}
    logits = torch.zeros(2, 3, 32, 32)
    x = torch.rand(2, 3, 32, 32) - 0.5
    # logits 0: log 2 per pixel whatever the target, summed over 3 x 32 x 32 pixels, mean over the batch
    assert model.reconstruction_loss(logits, x).item() == pytest.approx(3072 * math.log(2), rel=1e-6)
    # a saturated logit towards the target costs nothing; decode maps logits back into [-0.5, 0.5]
    x01 = (torch.rand(2, 3, 32, 32) > 0.5).float()
    assert model.reconstruction_loss((x01 * 2 - 1) * 100, x01 - 0.5).item() == pytest.approx(0.0, abs=1e-30)
    z = torch.zeros(1, 3)
    assert torch.equal(model.decode(z), torch.sigmoid(model.decoder(z)) - 0.5)


def test_the_field_models_are_their_references_compositions():
    parts = {name: ZOO[name].parts for name in ("annealedvae", "dipvae1", "dipvae2", "betatcvae")}
    assert parts == {"annealedvae": ("gaussian", ("capacity",)), "dipvae1": ("gaussian", ("dip",)),
                     "dipvae2": ("gaussian", ("dip",)), "betatcvae": ("gaussian", ("minibatch_tc",))}
    one, two = (tiny(n).regularizers[0] for n in ("dipvae1", "dipvae2"))
    assert (one.dip_type, one.lambda_d_factor, two.dip_type, two.lambda_d_factor) == ("i", 10.0, "ii", 1.0)
    assert [tiny(n).regularizers[0].model_dump() for n in ("annealedvae", "betatcvae")] == [
        {"kind": "capacity", "gamma": 1000.0, "c_max": 25.0, "iteration_threshold": 100000},
        {"kind": "minibatch_tc", "beta": 6.0}]
