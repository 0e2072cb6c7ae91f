"""fqvae's Tripod terms against the authors' own functions (github.com/kylehkhsu/tripod,
disentangle/models/autoencoder.py and disentangle/nn/quantizer.py), on the same float32 tensors and the same
perturbations: the largest difference per term, beside the reference's own float32 rounding (the same
functions evaluated in float64).

The reference is JAX and equinox code. It runs in a Python of its own (a virtual environment with
`pip install jax equinox einops optax numpy`, CPU wheels), so that JAX's numpy pins never meet fqvae's; the
two sides exchange arrays as .npy files in a temporary folder:

    python3 -m venv JAXENV && JAXENV/bin/pip install jax equinox einops optax numpy
    (or `pip install .[reference-tripod]` into fqvae's own environment and leave out --jax-python)
    git clone https://github.com/kylehkhsu/tripod TRIPOD
    python benchmarks/reference_tripod.py --tripod TRIPOD --jax-python JAXENV/bin/python [--cases 20]

Only the two modules are loaded, by path (the package's __init__ pulls in its datasets and metrics): their
`import ipdb` is a stub, and `jax.tree_map` (removed from JAX after the reference was written) is pointed
at `jax.tree_util.tree_map`. The reference functions are called as its `Autoencoder.batched_loss` calls
them:
  quantizer             Quantizer(d, 12)(h)['z_q']  vs  FixedGrid in training (straight-through)
  multiinformation      Autoencoder.latent_multiinformation(z, H, z_std)  vs  tripod.latent_multiinformation
                        (H = diag(z_std^2 * Silverman), z_std = std(z_c) + 1e-6, batched_loss's own lines)
  hessian, hessian_normalized
                        jax.vmap(Autoencoder.hessian_regularization, ...)(f, z, z_std, f(z), 2, 0.1, keys)
                        summed over the activations  vs  tripod.hessian_penalties
The decoder f is the same small network on both sides (z -> cond = tanh(z W1 + b1) -> block0 =
tanh(cond W2 + b2) -> x_logits = block0 W3 + b3, with the same weights); the perturbations are the draws
the reference makes from its per-sample keys (split(key) -> rademacher, normal), read back and handed to
fqvae's function. Inputs: batch 64, d = 10, h ~ 1.5 N(0, 1); one seed per case.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

BATCH, LATENTS, HIDDEN, OUT, LEVELS, K, EPSILON = 64, 10, 32, 48, 12, 2, 0.1
LAYERS = ("cond", "block0", "x_logits")


def make_inputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return {"h": (1.5 * rng.standard_normal((BATCH, LATENTS))).astype(f32),
            "w1": (rng.standard_normal((LATENTS, HIDDEN)) / np.sqrt(LATENTS)).astype(f32),
            "b1": (0.1 * rng.standard_normal(HIDDEN)).astype(f32),
            "w2": (rng.standard_normal((HIDDEN, HIDDEN)) / np.sqrt(HIDDEN)).astype(f32),
            "b2": (0.1 * rng.standard_normal(HIDDEN)).astype(f32),
            "w3": (rng.standard_normal((HIDDEN, OUT)) / np.sqrt(HIDDEN)).astype(f32),
            "b3": (0.1 * rng.standard_normal(OUT)).astype(f32),
            "key": np.array([seed], dtype=np.uint32)}


# ----------------------------------------------------------------------------------- the reference side (JAX)

def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def reference_side(tripod: Path, folder: Path, cases: int) -> None:
    import jax
    import jax.numpy as jnp

    if not hasattr(jax, "tree_map"):
        jax.tree_map = jax.tree_util.tree_map
    sys.modules["ipdb"] = types.ModuleType("ipdb")
    package = types.ModuleType("disentangle")
    package.__path__ = []
    sys.modules["disentangle"] = package
    for sub in ("nn", "losses", "utils", "models"):
        stub = types.ModuleType(f"disentangle.{sub}")
        stub.__path__ = []
        sys.modules[f"disentangle.{sub}"] = stub
        setattr(package, sub, stub)
    quantizer = _load(tripod / "disentangle/nn/quantizer.py", "disentangle.nn.quantizer")
    autoencoder = _load(tripod / "disentangle/models/autoencoder.py", "disentangle.models.autoencoder")
    Autoencoder = autoencoder.Autoencoder

    for case in range(cases):
        a = {k: np.load(folder / f"{case}_{k}.npy") for k in make_inputs(0)}
        w = {k: jnp.asarray(v) for k, v in a.items() if k != "key"}

        def decoder(z, w=w):  # one sample (d,) -> the named activations, as the reference's decoder returns
            cond = jnp.tanh(z @ w["w1"] + w["b1"])
            block0 = jnp.tanh(cond @ w["w2"] + w["b2"])
            return {"cond": cond, "block0": block0, "x_logits": block0 @ w["w3"] + w["b3"]}

        outs = jax.vmap(quantizer.Quantizer(num_latents=LATENTS, num_values_per_latent=LEVELS))(w["h"])
        z = outs["z_q"]
        # Autoencoder.batched_loss's lines, as written there
        z_std = jnp.std(outs["z_c"], axis=0) + 1e-6
        nz, b = z.shape[1], z.shape[0]
        silvermans = ((4 / (nz + 2)) ** (1 / (nz + 4)) * b ** (-1 / (nz + 4))) ** 2
        H = jnp.diag(z_std ** 2 * silvermans)
        mi = Autoencoder.latent_multiinformation(z, H, z_std)
        keys = jax.random.split(jax.random.PRNGKey(int(a["key"][0])), b)
        f_z = jax.vmap(decoder)(z)
        hess = jax.vmap(Autoencoder.hessian_regularization, in_axes=(None, 0, None, 0, None, None, 0))(
            decoder, z, z_std, f_z, K, EPSILON, keys)
        # the draws the reference made from those keys (its own split, then rademacher and normal)
        pairs = [jax.random.split(key, 2) for key in keys]
        rademacher = np.stack([np.asarray(jax.random.rademacher(p[0], shape=(K, nz))) for p in pairs], 1)  # (k, B, d)
        gaussian = np.stack([np.asarray(jax.random.normal(p[1], shape=(K, nz))) for p in pairs], 1)
        result = {"z": z, "mi": mi, "rademacher": rademacher.astype(np.float32),
                  "gaussian": gaussian.astype(np.float32),
                  "hp": sum(hess["hessian_penalty"][k] for k in LAYERS),
                  "nhp": sum(hess["hessian_penalty_normalized"][k] for k in LAYERS)}
        for k, v in result.items():
            np.save(folder / f"{case}_ref_{k}.npy", np.asarray(v))


# ----------------------------------------------------------------------------------- fqvae's side (PyTorch)

def _diff(ours, theirs) -> float:
    """The largest absolute difference, relative to the largest magnitude of the reference's values."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def fqvae_side(folder: Path, cases: int) -> dict[str, list[tuple[float, float]]]:
    """Per term and case: (fqvae in float32 vs the reference, the reference vs fqvae's function in float64
    on the same inputs and draws: the reference's own float32 rounding, the floor of any agreement)."""
    import torch

    from fqvae_cli.models.bottlenecks.fixed_grid import FixedGrid
    from fqvae_cli.models.tripod import hessian_penalties, latent_multiinformation

    grid = FixedGrid(LATENTS, LEVELS).train()
    diffs: dict[str, list[tuple[float, float]]] = {"quantizer": [], "multiinformation": [], "hessian": [],
                                                   "hessian_normalized": []}
    for case in range(cases):
        a = {k: torch.from_numpy(np.load(folder / f"{case}_{k}.npy")) for k in make_inputs(0) if k != "key"}
        ref = {k: np.load(folder / f"{case}_ref_{k}.npy") for k in ("z", "mi", "rademacher", "gaussian", "hp", "nhp")}
        terms = {}
        for dtype in (torch.float32, torch.float64):
            w = {k: v.to(dtype) for k, v in a.items()}

            def decoder(z, w=w):
                cond = torch.tanh(z @ w["w1"] + w["b1"])
                block0 = torch.tanh(cond @ w["w2"] + w["b2"])
                return {"cond": cond, "block0": block0, "x_logits": block0 @ w["w3"] + w["b3"]}

            with torch.no_grad():
                z = grid(w["h"]).z.to(dtype)
                z_std = torch.tanh(w["h"]).std(0, unbiased=False) + 1e-6
                mi = latent_multiinformation(z, z_std)
                rademacher = torch.from_numpy(ref["rademacher"]).to(dtype)  # (k, B, d)
                gaussian = torch.from_numpy(ref["gaussian"]).to(dtype)
                hp, nhp = hessian_penalties(decoder, z, z_std, rademacher, gaussian, EPSILON, f_z=decoder(z))
            terms[dtype] = {"quantizer": (z, ref["z"]), "multiinformation": (mi, ref["mi"]),
                            "hessian": (hp, ref["hp"]), "hessian_normalized": (nhp, ref["nhp"])}
        for term in diffs:
            ours, theirs = terms[torch.float32][term]
            exact = terms[torch.float64][term][0]
            diffs[term].append((_diff(ours, theirs), _diff(exact, theirs)))
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tripod", type=Path, required=True, help="a checkout of github.com/kylehkhsu/tripod")
    ap.add_argument("--jax-python", default=sys.executable, help="the Python that has jax and equinox")
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--side", choices=["fqvae", "reference"], default="fqvae", help=argparse.SUPPRESS)
    ap.add_argument("--io", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "reference":
        reference_side(args.tripod, args.io, args.cases)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in range(args.cases):
            for k, v in make_inputs(case).items():
                np.save(folder / f"{case}_{k}.npy", v)
        subprocess.run([args.jax_python, __file__, "--side", "reference", "--tripod", str(args.tripod),
                        "--io", str(folder), "--cases", str(args.cases)], check=True)
        diffs = fqvae_side(folder, args.cases)
    print(f"{args.cases} cases, batch {BATCH}, d = {LATENTS}, {LEVELS} levels, k = {K}, epsilon = {EPSILON}; float32")
    print("largest |difference| / largest |reference value| over the batch, worst case:")
    print(f"{'term':20} {'fqvae vs reference':>19} {'reference vs float64':>21}")
    for term, pairs in diffs.items():
        print(f"{term:20} {max(p[0] for p in pairs):19.2e} {max(p[1] for p in pairs):21.2e}")


if __name__ == "__main__":
    main()
