"""fqvae's loss terms of the field's models against disentanglement_lib 1.5's own functions
(methods/unsupervised/vae.py, methods/shared/losses.py), on the same float32 tensors: the largest absolute
and relative difference per term.

The reference runs in TensorFlow 1 graph mode (tensorflow.compat.v1, a session), imported from its wheel
in this process only, never installed; get it without its dependencies:

    pip download disentanglement-lib==1.5 --no-deps -d DIR
    pip install tensorflow-cpu          # (the `reference` extra)
    python benchmarks/reference_models.py --lib DIR/disentanglement_lib-1.5-py3-none-any.whl [--cases 20]

vae.py imports modules it does not need for these functions (its encoder base class, the architectures,
the optimizers, tensorflow.contrib's TPU estimator, tensorflow_hub); they are stubs here, as gin is (its
decorators return what they decorate). The reference functions are called as the study calls them:
  kl           compute_gaussian_kl(z_mean, z_logvar)
  betatcvae    BetaTCVAE(beta).regularizer(kl, z_mean, z_logvar, z_sampled) (total_correlation, gaussian_log_density)
  dipvae1/2    DIPVAE(lambda_od, lambda_d_factor, "i"/"ii").regularizer(...) (compute_covariance_z_mean,
               regularize_diag_off_diag_dip)
  annealedvae  AnnealedVAE(gamma, c_max, iteration_threshold).regularizer(...) at global step t (anneal)
  bernoulli    reduce_mean(bernoulli_loss(x + 0.5, logits, "logits"))
against fqvae's kl_gaussian, MinibatchTC, DIP, Capacity (their parts summed) and
Autoencoder.reconstruction_loss. Inputs: batch 64 of d = 10 latents, mu ~ N(0, 1), logvar ~ U(-3, 1),
z = mu + exp(logvar / 2) eps, images and logits of 3 x 32 x 32; one numpy seed per case.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_agreement import _configurable, _module, package_root  # noqa: E402

from fqvae_cli.models.capacity import Capacity  # noqa: E402
from fqvae_cli.models.dip import DIP  # noqa: E402
from fqvae_cli.models.minibatch_tc import MinibatchTC  # noqa: E402
from fqvae_cli.models.regularizers import kl_gaussian  # noqa: E402
from fqvae_cli.models.zoo import ModelConfig, build_model  # noqa: E402

BATCH, LATENTS = 64, 10


def load_reference(lib: Path) -> types.SimpleNamespace:
    root = package_root(lib)
    required = object()
    gin = _module("gin", configurable=_configurable, REQUIRED=required)
    gin.tf = _module("gin.tf", configurable=_configurable, REQUIRED=required)
    contrib = _module("tensorflow.contrib")
    contrib.tpu = _module("tensorflow.contrib.tpu")
    _module("tensorflow_hub")
    _module("tensorflow_probability")
    for sub in ("", "methods", "methods/shared", "methods/unsupervised"):
        name = ".".join(["disentanglement_lib", *sub.split("/")]) if sub else "disentanglement_lib"
        _module(name).__path__ = [os.path.join(root, sub) if sub else root]
    for unused in ("architectures", "optimizers"):
        _module(f"disentanglement_lib.methods.shared.{unused}")
    _module("disentanglement_lib.methods.unsupervised.gaussian_encoder_model", GaussianEncoderModel=object)
    import tensorflow as tf_root

    tf_root.contrib = contrib
    losses = importlib.import_module("disentanglement_lib.methods.shared.losses")
    sys.modules["disentanglement_lib.methods.shared"].losses = losses
    vae = importlib.import_module("disentanglement_lib.methods.unsupervised.vae")
    return types.SimpleNamespace(vae=vae, losses=losses, source=root)


def case_inputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    mu = rng.normal(size=(BATCH, LATENTS)).astype(np.float32)
    logvar = rng.uniform(-3, 1, size=(BATCH, LATENTS)).astype(np.float32)
    z = (mu + np.exp(logvar / 2) * rng.normal(size=mu.shape)).astype(np.float32)
    x = (rng.uniform(size=(8, 3, 32, 32)) - 0.5).astype(np.float32)
    logits = rng.normal(scale=3.0, size=(8, 3, 32, 32)).astype(np.float32)
    return {"mu": mu, "logvar": logvar, "z": z, "x": x, "logits": logits, "t": int(rng.randint(0, 150_000))}


def reference_values(ref: types.SimpleNamespace, a: dict, settings: dict) -> dict[str, float]:
    import tensorflow.compat.v1 as tf

    tf.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        step = tf.train.create_global_step()
        mu, logvar, z = (tf.constant(a[k]) for k in ("mu", "logvar", "z"))
        v = ref.vae
        kl = v.compute_gaussian_kl(mu, logvar)
        s = settings
        terms = {
            "kl": kl,
            "betatcvae": v.BetaTCVAE(beta=s["beta"]).regularizer(kl, mu, logvar, z),
            "dipvae1": v.DIPVAE(s["lambda_od"], 10.0, "i").regularizer(kl, mu, logvar, z),
            "dipvae2": v.DIPVAE(s["lambda_od"], 1.0, "ii").regularizer(kl, mu, logvar, z),
            "annealedvae": v.AnnealedVAE(s["gamma"], s["c_max"], s["iteration_threshold"]).regularizer(
                kl, mu, logvar, z),
            # the reference's images are NHWC in [0, 1]; the sum over pixels does not depend on the layout
            "bernoulli": tf.reduce_mean(ref.losses.bernoulli_loss(
                tf.constant(np.transpose(a["x"] + 0.5, (0, 2, 3, 1))),
                tf.constant(np.transpose(a["logits"], (0, 2, 3, 1))), "logits")),
        }
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(step.assign(a["t"]))
            return {k: float(val) for k, val in sess.run(terms).items()}


def fqvae_values(a: dict, settings: dict, model) -> dict[str, float]:
    t = {k: torch.from_numpy(a[k]) for k in ("mu", "logvar", "z")}
    s = settings

    def total(parts: dict) -> float:
        return float(sum(parts.values()))

    return {
        "kl": float(kl_gaussian(t["mu"], t["logvar"])),
        "betatcvae": total(MinibatchTC(beta=s["beta"])(t)),
        "dipvae1": total(DIP(lambda_od=s["lambda_od"], lambda_d_factor=10.0)(t)),
        "dipvae2": total(DIP(dip_type="ii", lambda_od=s["lambda_od"], lambda_d_factor=1.0)(t)),
        "annealedvae": total(Capacity(gamma=s["gamma"], c_max=s["c_max"], iteration_threshold=s["iteration_threshold"])(
            {**t, "iteration": torch.tensor(a["t"])})),
        "bernoulli": float(model.reconstruction_loss(torch.from_numpy(a["logits"]), torch.from_numpy(a["x"]))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", type=Path, required=True, help="the disentanglement_lib 1.5 wheel or folder")
    parser.add_argument("--cases", type=int, default=20)
    args = parser.parse_args()
    ref = load_reference(args.lib)
    model = build_model(ModelConfig.from_flat(name="dipvae1", latent_dim=LATENTS, width=4, hidden=8))
    grid = [{"beta": b, "lambda_od": lod, "gamma": 1000.0, "c_max": c, "iteration_threshold": 100_000}
            for b, lod, c in zip((1.0, 2.0, 4.0, 6.0, 8.0, 10.0), (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
                                 (5.0, 10.0, 25.0, 50.0, 75.0, 100.0), strict=True)]
    worst: dict[str, tuple[float, float, float]] = {}
    for case in range(args.cases):
        a, s = case_inputs(case), grid[case % len(grid)]
        theirs, ours = reference_values(ref, a, s), fqvae_values(a, s, model)
        for term, r in theirs.items():
            diff = abs(ours[term] - r)
            rel = diff / max(abs(r), 1e-30)
            if term not in worst or diff > worst[term][0]:
                worst[term] = (diff, rel, r)
    import tensorflow as tf

    print(f"disentanglement_lib from {ref.source}; TensorFlow {tf.__version__}, PyTorch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}; {args.cases} cases, float32")
    print(f"{'term':<12} {'largest |fqvae - reference|':>28} {'relative':>10} {'reference value there':>22}")
    for term, (diff, rel, r) in worst.items():
        print(f"{term:<12} {diff:>28.3e} {rel:>10.2e} {r:>22.6g}")


if __name__ == "__main__":
    main()
