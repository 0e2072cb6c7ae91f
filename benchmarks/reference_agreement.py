"""fqvae's metrics against disentanglement_lib 1.5's own functions, on the same arrays: a table of both values
and their absolute difference per metric and case, then the largest difference per metric.

The reference is read from its wheel (or an unpacked copy of it), imported in this process only, never
installed. Get the wheel without its dependencies (tensorflow among them, which the metrics do not need):

    pip download disentanglement-lib==1.5 --no-deps -d DIR
    python benchmarks/reference_agreement.py --lib DIR/disentanglement_lib-1.5-py3-none-any.whl \
        [--udr udr.py] [--tripod dci.py] [--codes ENCODED ...] [--run RUN ...]

UDR is not in the 1.5 wheel: --udr takes disentanglement_lib's evaluation/udr/metrics/udr.py from its
repository (google-research/disentanglement_lib, master), imported under the same stubs. --tripod takes
Tripod's disentangle/metrics/dci.py (kylehkhsu/tripod) for the random-forest DCI: its `import ipdb`, `jax`
and `jax.numpy` are stubbed (jnp's dtypes are numpy's), and its `OneHotEncoder(sparse=False)` is given as
scikit-learn >= 1.2 spells it (sparse_output).

Its metric modules import numpy, scipy, scikit-learn, six, absl.logging and gin.tf. gin.tf is replaced by
a stub whose `configurable(...)` returns the function unchanged (and `gin.REQUIRED` a sentinel); six and
absl.logging are stubbed only where they are not installed (this process only). With the decorators inert,
the published gin bindings (unsupervised_study_v1/metric_configs) are applied by binding the same
arguments: the histogram discretiser with 20 bins, and prune_dims.threshold = 0.05.

Cases:
- synthetic (always): codes defined on every combination of the synth3d grid (10, 10, 10, 8, 4, 15):
  perfect and noisy, continuous and discrete (a duplicated latent, mixing latents, noise latents and one
  latent of tiny variance that FactorVAE prunes);
- --codes DIR: what `fqvae encode RUN --out DIR` wrote (its meta.json gives the protocol sizes and the
  code kind); rows as `fqvae evaluate` uses them;
- --run RUN: the FactorVAE and BetaVAE scores through that run's encoder (registry and dataset from
  FQVAE_HOME or --db); each image is encoded once and its code reused, so both sides get the same code
  for the same image whatever batch it arrives in.

How the reference is called (its layout: latents x samples):
- MIG: mig._compute_mig; SAP: sap_score.compute_score_matrix and compute_avg_diff_top_two (what
  _compute_sap runs, keeping the matrix), continuous_factors=False.
- Modularity and Explicitness: compute_modularity_explicitness itself, over a dataset that hands out the
  fixed rows in order (it has no function on arrays; recomposing its inner ones would be a transcription).
- IRS: irs.compute_irs and the unsupervised scores: unsupervised_metrics.unsupervised_metrics, each over a
  dataset that hands out the fixed rows in order (their gin configs: num_train 10,000, batch 16; here the
  quick protocol's mig_n, 10,000, fqvae's size for both).
- UDR: udr.compute_udr_sklearn (lasso and spearman) over three models' codes of the same rows (a dataset
  that hands out row numbers in order, representation functions returning (codes, KL)); one model has a
  latent with KL 0.005 that both sides filter out; models without a KL are given KL 1 everywhere.
- Random-forest DCI: Tripod's compute_relative_importance_matrix with every forest given fqvae's seed for
  (seed, j) (its own forests take none), on the same pooled rows, against fqvae's `--dci-estimator rf`.
- DCI: dci._compute_dci twice: as published (its `GradientBoostingClassifier()` draws its random state from
  numpy's global one, here seeded 0; fqvae seeds factor j's trees from (seed, j)), and with its trees given
  fqvae's seeds, which separates the trees' chance from the code; and dci.disentanglement / completeness
  on fqvae's importance matrix.
- FactorVAE, BetaVAE: compute_factor_vae and compute_beta_vae_sklearn over a ground-truth dataset built
  as the reference builds Shapes3D (its own SplitDiscreteStateSpace, every factor latent) whose
  observations are the factor combinations, with numpy RandomState(seed) on both sides. Every combination
  each side asks the representation for is recorded; the script says whether the two lists are equal.

Sizes: MIG, SAP and Modularity/Explicitness use the quick protocol's (10,000; 5,000 / 5,000; 5,000 / 5,000);
DCI uses --dci-train / --dci-test (default 500 / 250: the trees are the cost, three fits per case); the
intervention scores use the quick protocol's (batches of 64, 1,000 / 500 points, 10,000 for the variances)
on the synthetic cases, and --run-points / half as many with a run's encoder.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import os
import platform
import sys
import types
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from fqvae_cli.errors import DataError
from fqvae_cli.metrics.beta_vae import compute_beta_vae
from fqvae_cli.metrics.dci import completeness, compute_dci, disentanglement, factor_random_state
from fqvae_cli.metrics.factor_vae import compute_factor_vae
from fqvae_cli.metrics.irs import compute_irs
from fqvae_cli.metrics.mig import compute_mig
from fqvae_cli.metrics.modularity import compute_modularity
from fqvae_cli.metrics.sap import compute_sap
from fqvae_cli.metrics.udr import compute_udr
from fqvae_cli.metrics.unsupervised import compute_unsupervised

GRID = (10, 10, 10, 8, 4, 15)  # synth3d (Shapes3D's sizes)
METRIC_MODULES = ("utils", "mig", "sap_score", "modularity_explicitness", "dci", "factor_vae", "beta_vae", "irs",
                  "unsupervised_metrics")
TOLERANCE = 1e-6


# -- the reference, imported from its wheel or folder ---------------------------------------------------------

def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _configurable(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


def _install_stubs() -> None:
    required = object()
    gin = _module("gin", configurable=_configurable, REQUIRED=required)
    gin.tf = _module("gin.tf", configurable=_configurable, REQUIRED=required)
    try:
        import six.moves  # noqa: F401
    except ImportError:
        _module("six").moves = _module("six.moves", range=range)
    try:
        import absl.logging  # noqa: F401
    except ImportError:
        def quiet(*args, **kwargs):
            return None
        _module("absl").logging = _module("absl.logging", info=quiet, warning=quiet, error=quiet)


def package_root(lib: Path) -> str:
    """The disentanglement_lib package folder: inside the wheel (a path zipimport reads) or on disk."""
    if lib.is_file():
        if not zipfile.is_zipfile(lib):
            sys.exit(f"{lib} is not a wheel (zip); give the file `pip download` wrote or its unpacked folder.")
        with zipfile.ZipFile(lib) as wheel:
            if "disentanglement_lib/evaluation/metrics/mig.py" not in wheel.namelist():
                sys.exit(f"{lib} holds no disentanglement_lib/evaluation/metrics.")
        return os.path.join(str(lib), "disentanglement_lib")
    for root in (lib, lib / "disentanglement_lib"):
        if (root / "evaluation" / "metrics" / "mig.py").is_file():
            return str(root)
    sys.exit(f"{lib} holds no disentanglement_lib/evaluation/metrics; give the wheel or its unpacked folder.")


def load_reference(lib: Path) -> SimpleNamespace:
    """disentanglement_lib's metric modules, its GroundTruthData and SplitDiscreteStateSpace, gin-bound."""
    root = package_root(lib)
    _install_stubs()
    # The packages are empty (__init__.py holds only the licence): their modules stand in for them, with
    # __path__ pointing into the wheel or folder, and the import system finds the submodules there.
    for sub in ("", "evaluation", "evaluation/metrics", "data", "data/ground_truth"):
        name = ".".join(["disentanglement_lib", *sub.split("/")]) if sub else "disentanglement_lib"
        _module(name).__path__ = [os.path.join(root, sub) if sub else root]
    metrics = {m: importlib.import_module(f"disentanglement_lib.evaluation.metrics.{m}") for m in METRIC_MODULES}
    truth = importlib.import_module("disentanglement_lib.data.ground_truth.ground_truth_data")
    # util.py imports tensorflow at its top for a function not used here: a stub for that import only.
    stubs = ("tensorflow", "tensorflow.compat", "tensorflow.compat.v1")
    for name in stubs:
        _module(name)
    try:
        util = importlib.import_module("disentanglement_lib.data.ground_truth.util")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    utils = metrics["utils"]
    utils.make_discretizer = functools.partial(utils.make_discretizer, num_bins=20,
                                               discretizer_fn=utils._histogram_discretize)
    metrics["factor_vae"]._prune_dims = functools.partial(metrics["factor_vae"]._prune_dims, threshold=0.05)
    return SimpleNamespace(**metrics, GroundTruthData=truth.GroundTruthData,
                           StateSpace=util.SplitDiscreteStateSpace, source=root)


def factor_grid(ref: SimpleNamespace, sizes: tuple[int, ...]):
    """A GroundTruthData built as the reference builds Shapes3D, whose observations are the combinations."""

    class FactorGrid(ref.GroundTruthData):
        def __init__(self):
            self.factor_sizes = list(sizes)
            self.state_space = ref.StateSpace(self.factor_sizes, list(range(len(sizes))))

        @property
        def num_factors(self):
            return self.state_space.num_latent_factors

        @property
        def factors_num_values(self):
            return self.factor_sizes

        @property
        def observation_shape(self):
            return [len(self.factor_sizes)]

        def sample_factors(self, num, random_state):
            return self.state_space.sample_latent_factors(num, random_state)

        def sample_observations_from_factors(self, factors, random_state):
            return self.state_space.sample_all_factors(factors, random_state)

    return FactorGrid()


def fixed_rows(ref: SimpleNamespace, factors: np.ndarray):
    """A GroundTruthData that hands out the given rows in order; its observations are row numbers."""

    class FixedRows(ref.GroundTruthData):
        next_row = 0

        @property
        def num_factors(self):
            return factors.shape[1]

        def sample(self, num, random_state):
            rows = np.arange(self.next_row, self.next_row + num)
            self.next_row += num
            return factors[rows], rows

    return FixedRows()


class Recorder:
    """A representation function that keeps every factor combination it is asked for, in order."""

    def __init__(self, represent):
        self.represent, self.asked = represent, []

    def __call__(self, factors):
        factors = np.asarray(factors)
        self.asked.append(factors.copy())
        return self.represent(factors)

    def combinations(self) -> np.ndarray:
        return np.concatenate(self.asked)


# -- representations ------------------------------------------------------------------------------------------

class GridCodes:
    """Codes given for every combination of a factor grid: a pure function of the combination."""

    def __init__(self, sizes: tuple[int, ...], table: np.ndarray):
        self.sizes, self.table = sizes, table

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        return self.table[np.ravel_multi_index(tuple(np.asarray(factors).T), self.sizes)]


def synthetic_cases(sizes: tuple[int, ...], seed: int = 0) -> dict[str, GridCodes]:
    """name -> codes on the grid."""
    rng = np.random.default_rng(seed)
    s = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)
    n, f = s.shape
    scaled = s / (np.array(sizes) - 1.0)
    noisy = np.concatenate([
        scaled + rng.normal(0.0, 0.25, (n, f)),
        scaled[:, :2] - scaled[:, 3:5] + rng.normal(0.0, 0.25, (n, 2)),  # two latents mixing two factors each
        rng.normal(0.0, 1.0, (n, 2)),  # noise alone
        rng.normal(0.0, 0.03, (n, 1)),  # std < 0.05: FactorVAE prunes it
    ], axis=1)
    owner = [rng.permutation(64)[: k * 4].reshape(k, 4) for k in sizes]  # each value owns 4 of 64 indices
    idx = np.stack([owner[j][s[:, j], rng.integers(0, 4, n)] for j in range(f)], axis=1)
    idx = np.where(rng.random((n, f)) < 0.15, rng.integers(0, 64, (n, f)), idx)
    mixed = (s[:, :3] * 7 + s[:, 3:] * 3 + rng.integers(0, 2, (n, 3))) % 64
    rare = (rng.random((n, 1)) < 0.002).astype(np.int64)  # std about 0.045: pruned
    return {
        "perfect continuous": GridCodes(sizes, scaled),
        "noisy continuous": GridCodes(sizes, noisy),
        "perfect discrete": GridCodes(sizes, np.concatenate([s, s[:, :1]], axis=1)),  # factor 0 twice
        "noisy discrete": GridCodes(sizes, np.concatenate([idx, mixed, rng.integers(0, 64, (n, 2)), rare], axis=1)),
    }


class RunCodes:
    """A run's codes of the images of the given combinations, each image encoded once."""

    def __init__(self, loaded, device):
        self.loaded, self.device = loaded, device
        self.known = np.zeros(loaded.dataset.space.size, dtype=bool)
        self.table = None

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        from fqvae_cli.metrics.codes import encode_codes

        index = self.loaded.dataset.space.ravel(np.asarray(factors, dtype=np.int64))
        new = np.unique(index[~self.known[index]])
        if len(new):
            codes = encode_codes(self.loaded.model, self.loaded.dataset, new, self.device)
            if self.table is None:
                self.table = np.zeros((len(self.known), codes.shape[1]), dtype=codes.dtype)
            self.table[new] = codes
            self.known[new] = True
        return self.table[index]


# -- both sides -----------------------------------------------------------------------------------------------

def array_metrics(ref, case: str, codes: np.ndarray, factors: np.ndarray, sizes: dict) -> list[tuple]:
    """(case, metric, fqvae, reference) rows of MIG, SAP, Modularity/Explicitness and DCI on the arrays."""
    rows = []
    n = sizes["mig_n"]
    ours = compute_mig(codes[:n], factors[:n]).mig
    rows.append((case, "MIG", ours, ref.mig._compute_mig(codes[:n].T, factors[:n].T)["discrete_mig"]))

    def split(train: int, test: int):
        return codes[:train], factors[:train], codes[train:train + test], factors[train:train + test]

    x, y, xt, yt = split(sizes["sap_train"], sizes["sap_test"])
    ours = compute_sap(x, y, xt, yt)
    matrix = ref.sap_score.compute_score_matrix(x.T, y.T, xt.T, yt.T, False)
    rows.append((case, "SAP", ours.sap, ref.sap_score.compute_avg_diff_top_two(matrix)))
    rows.append((case, "SAP accuracies (largest entry diff)", 0.0, float(np.abs(ours.score_matrix - matrix).max())))

    train, test = sizes["modularity_train"], sizes["modularity_test"]
    ours = compute_modularity(*split(train, test))
    theirs = ref.modularity_explicitness.compute_modularity_explicitness(
        fixed_rows(ref, factors), lambda r: codes[r], np.random.RandomState(0), num_train=train, num_test=test)
    rows += [(case, "Modularity", ours.modularity, theirs["modularity_score"]),
             (case, "Explicitness (test)", ours.explicitness, theirs["explicitness_score_test"]),
             (case, "Explicitness (train)", ours.explicitness_train, theirs["explicitness_score_train"])]

    x, y, xt, yt = split(sizes["dci_train"], sizes["dci_test"])
    ours = compute_dci(x, y, xt, yt, seed=0)
    np.random.seed(0)  # the reference's trees draw from numpy's global state
    published = ref.dci._compute_dci(x.T, y.T, xt.T, yt.T)
    with trees_seeded_as_fqvae(ref, seed=0):
        seeded = ref.dci._compute_dci(x.T, y.T, xt.T, yt.T)
    for label, theirs in (("", published), (", same tree seeds", seeded)):
        rows += [(case, f"DCI D{label}", ours.d, theirs["disentanglement"]),
                 (case, f"DCI C{label}", ours.c, theirs["completeness"]),
                 (case, f"DCI I (test){label}", ours.i, theirs["informativeness_test"]),
                 (case, f"DCI I (train){label}", ours.i_train, theirs["informativeness_train"])]
    r = ours.importance
    rows += [(case, "DCI D, one importance matrix", disentanglement(r), ref.dci.disentanglement(r)),
             (case, "DCI C, one importance matrix", completeness(r), ref.dci.completeness(r))]
    return rows


def load_file_module(name: str, path: Path, stubs: dict[str, dict] | None = None) -> types.ModuleType:
    """One reference file imported as module `name` (stubbed imports in this process only)."""
    import importlib.util

    for stub, attrs in (stubs or {}).items():
        _module(stub, **attrs)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tripod_dci(path: Path) -> types.ModuleType:
    from sklearn import preprocessing

    jnp = {k: getattr(np, k) for k in ("int64", "int32", "float32", "float64")}
    _module("jax").numpy = _module("jax.numpy", **jnp)
    module = load_file_module("tripod_dci", path, {"ipdb": {}})
    real = preprocessing.OneHotEncoder
    module.preprocessing = SimpleNamespace(
        OneHotEncoder=lambda sparse=True, **kw: real(sparse_output=sparse, **kw),
        StandardScaler=preprocessing.StandardScaler, LabelEncoder=preprocessing.LabelEncoder)
    return module


def code_metrics(ref, case: str, codes: np.ndarray, factors: np.ndarray, n: int) -> list[tuple]:
    """IRS and the unsupervised scores of the first n rows, both sides."""
    rows = []
    ours = compute_irs(codes[:n], factors[:n])
    theirs = ref.irs.compute_irs(fixed_rows(ref, factors), lambda r: codes[r], np.random.RandomState(0),
                                 num_train=n, batch_size=16)
    # Not compared: the reference's num_active_dims is np.sum(active_mus), the sum of the active codes'
    # values rather than their number; fqvae's irs_active counts them.
    rows.append((case, "IRS", ours.irs, theirs["IRS"]))
    varying = codes[:n].var(axis=0) > 0
    kept = codes[:, varying] if varying.sum() < codes.shape[1] else codes  # the reference's NaN otherwise
    theirs = ref.unsupervised_metrics.unsupervised_metrics(fixed_rows(ref, factors), lambda r: kept[r],
                                                           np.random.RandomState(0), num_train=n, batch_size=16)
    try:
        ours = compute_unsupervised(kept[:n])
    except DataError as exc:  # a singular covariance: the reference's total correlation is infinite or noise
        print(f"{case}: unsupervised scores refused by fqvae ({exc}); the reference gives total correlation "
              f"{theirs['gaussian_total_correlation']:.6g}", flush=True)
        return rows
    rows += [(case, "Gaussian total correlation", ours.total_correlation, theirs["gaussian_total_correlation"]),
             (case, "Gaussian Wasserstein corr.", ours.wasserstein, theirs["gaussian_wasserstein_correlation"]),
             (case, "Gaussian Wasserstein corr. (norm)", ours.wasserstein_norm,
              theirs["gaussian_wasserstein_correlation_norm"]),
             (case, "mutual information score", ours.mutual_info, theirs["mutual_info_score"])]
    return rows


def reference_udr(udr, models: list[np.ndarray], kls: list[np.ndarray | None], method: str) -> list[float]:
    """The reference's model scores: a dataset handing out row numbers in order, representation functions
    returning (codes, KL), KL 1 for models without one."""

    class Rows:
        next_row = 0

        def sample_observations(self, num, random_state):
            rows = np.arange(self.next_row, self.next_row + num)
            self.next_row += num
            return rows

    def represent(codes, kl):
        return lambda rows: (codes[rows], np.ones(codes.shape[1]) if kl is None else np.asarray(kl))

    got = udr.compute_udr_sklearn(Rows(), [represent(c, k) for c, k in zip(models, kls, strict=True)],
                                  np.random.RandomState(0), batch_size=10, num_data_points=len(models[0]),
                                  correlation_matrix=method, filter_low_kl=True, include_raw_correlations=False,
                                  kl_filter_threshold=0.01)
    return list(got["model_scores"])


def udr_rows(udr, case: str, models: list[np.ndarray], kls: list[np.ndarray | None]) -> list[tuple]:
    """Each model's UDR, both variants, on the same rows."""
    out = []
    for method in ("lasso", "spearman"):
        ours = compute_udr(models, kls, method=method)
        theirs = reference_udr(udr, models, kls, method)
        out += [(case, f"UDR {method}, model {i}", a, b) for i, (a, b) in enumerate(zip(ours.scores, theirs,
                                                                                            strict=True))]
    return out


def forest_rows(tripod, case: str, codes: np.ndarray, factors: np.ndarray, sizes: dict, discrete: bool,
                seed: int = 0) -> list[tuple]:
    """fqvae's random-forest DCI against Tripod's importance matrix with the same forest seeds."""
    from sklearn import ensemble

    n = sizes["dci_train"] + sizes["dci_test"]
    x, y = codes[:n], factors[:n]
    ours = compute_dci(x[:sizes["dci_train"]], y[:sizes["dci_train"]], x[sizes["dci_train"]:], y[sizes["dci_train"]:],
                       estimator="rf", discrete=discrete, seed=seed)
    seeds = (factor_random_state(seed, j) for j in itertools.count())
    published = tripod.ensemble
    tripod.ensemble = SimpleNamespace(RandomForestClassifier=lambda **kw: ensemble.RandomForestClassifier(
        **(kw | {"n_jobs": 1, "random_state": next(seeds)})))
    onehot = None
    if discrete:  # Tripod's int path cannot store one-hot importances; its sparse path takes one-hot codes
        from scipy.sparse import csr_matrix
        from sklearn.preprocessing import OneHotEncoder

        onehot = OneHotEncoder(sparse_output=False).fit(x)
    try:
        given = csr_matrix(onehot.transform(x)) if discrete else x.astype(np.float64)
        r, i = tripod.compute_relative_importance_matrix(given, y)
    finally:
        tripod.ensemble = published
    if discrete:  # a row per one-hot column: fqvae sums each latent's rows
        r = np.add.reduceat(r, np.cumsum([0] + [len(c) for c in onehot.categories_[:-1]]), axis=0)
    return [(case, "DCI rf D", ours.d, tripod.disentanglement(r)), (case, "DCI rf C", ours.c, tripod.completeness(r)),
            (case, "DCI rf I", ours.i, i),
            (case, "DCI rf importance (largest diff)", 0.0, float(np.abs(ours.importance - r).max()))]


@contextmanager
def trees_seeded_as_fqvae(ref, seed: int):
    """The reference's DCI with factor j's trees given fqvae's random_state for (seed, j), the only thing
    its `GradientBoostingClassifier()` leaves to chance (the order in which a split's features are tried)."""
    from sklearn import ensemble

    seeds = (factor_random_state(seed, j) for j in itertools.count())
    published = ref.dci.ensemble
    ref.dci.ensemble = SimpleNamespace(
        GradientBoostingClassifier=lambda: ensemble.GradientBoostingClassifier(random_state=next(seeds)))
    try:
        yield
    finally:
        ref.dci.ensemble = published


def intervention_metrics(ref, case: str, represent, sizes: tuple[int, ...], p: dict, seed: int = 0,
                         ) -> tuple[list[tuple], list[str]]:
    """Rows of the FactorVAE and BetaVAE scores, and whether both sides asked for the same combinations."""
    grid = factor_grid(ref, sizes)
    rows, notes = [], []
    mine, theirs = Recorder(represent), Recorder(represent)
    ours = compute_factor_vae(sizes, mine, np.random.RandomState(seed), batch_size=p["factor_vae_batch"],
                              num_train=p["factor_vae_train"], num_eval=p["factor_vae_eval"],
                              num_variance_estimate=p["factor_vae_variance"])
    got = ref.factor_vae.compute_factor_vae(grid, theirs, np.random.RandomState(seed),
                                            batch_size=p["factor_vae_batch"], num_train=p["factor_vae_train"],
                                            num_eval=p["factor_vae_eval"],
                                            num_variance_estimate=p["factor_vae_variance"])
    rows += [(case, "FactorVAE score", ours.score, got["eval_accuracy"]),
             (case, "FactorVAE train accuracy", ours.train_accuracy, got["train_accuracy"])]
    notes.append(_same_draws(case, "FactorVAE", mine, theirs))

    mine, theirs = Recorder(represent), Recorder(represent)
    ours = compute_beta_vae(sizes, mine, np.random.RandomState(seed), batch_size=p["beta_vae_batch"],
                            num_train=p["beta_vae_train"], num_eval=p["beta_vae_eval"])
    got = ref.beta_vae.compute_beta_vae_sklearn(grid, theirs, np.random.RandomState(seed),
                                                batch_size=p["beta_vae_batch"], num_train=p["beta_vae_train"],
                                                num_eval=p["beta_vae_eval"])
    rows += [(case, "BetaVAE score", ours.score, got["eval_accuracy"]),
             (case, "BetaVAE train accuracy", ours.train_accuracy, got["train_accuracy"])]
    notes.append(_same_draws(case, "BetaVAE", mine, theirs))
    return rows, notes


def _same_draws(case: str, metric: str, mine: Recorder, theirs: Recorder) -> str:
    a, b = mine.combinations(), theirs.combinations()
    same = a.shape == b.shape and bool((a == b).all())
    return (f"{case}, {metric}: {'identical' if same else 'DIFFERENT'} factor combinations "
            f"({len(a):,} asked by fqvae in {len(mine.asked)} calls, {len(b):,} by the reference in "
            f"{len(theirs.asked)} calls)")


# -- the script -----------------------------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_table(rows: list[tuple]) -> None:
    print(f"{'case':<32} {'metric':<36} {'fqvae':>12} {'disent._lib':>12} {'|diff|':>10}")
    for case, metric, ours, theirs in rows:
        diff = abs(float(ours) - float(theirs))
        flag = "" if diff <= TOLERANCE else "  > 1e-6"
        print(f"{case:<32} {metric:<36} {float(ours):12.6f} {float(theirs):12.6f} {diff:10.2e}{flag}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", type=Path, required=True, help="disentanglement_lib-1.5 wheel or unpacked folder")
    parser.add_argument("--codes", type=Path, action="append", default=[], help="a folder `fqvae encode` wrote")
    parser.add_argument("--run", action="append", default=[], help="a run whose encoder the FactorVAE and BetaVAE "
                        "scores use (registry: --db, else FQVAE_DB, else FQVAE_HOME)")
    parser.add_argument("--db", default=None)
    parser.add_argument("--dci-train", type=int, default=500)
    parser.add_argument("--dci-test", type=int, default=250)
    parser.add_argument("--run-points", type=int, default=200, help="intervention training points with a run's "
                        "encoder (evaluation: half as many)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--only-added", action="store_true", help="only IRS, the unsupervised scores and (with "
                        "--udr, --tripod) UDR and the random-forest DCI: minutes less of DCI's trees")
    parser.add_argument("--udr", type=Path, help="disentanglement_lib's evaluation/udr/metrics/udr.py")
    parser.add_argument("--tripod", type=Path, help="Tripod's disentangle/metrics/dci.py (random-forest DCI)")
    args = parser.parse_args()

    import json

    import scipy
    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    from fqvae_cli.experiments import load_experiments

    ref = load_reference(args.lib.expanduser().resolve())
    udr = load_file_module("dlib_udr", args.udr) if args.udr else None
    tripod = load_tripod_dci(args.tripod) if args.tripod else None
    print(f"disentanglement_lib from {ref.source}; {cpu_name()}; Python {platform.python_version()}, numpy "
          f"{np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}", flush=True)
    quick = dict(load_experiments()["protocols"]["quick"])
    dci_sizes = {"dci_train": args.dci_train, "dci_test": args.dci_test}
    rows, notes = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # both sides' iteration limits are the protocol
        warnings.simplefilter("ignore", RuntimeWarning)  # the reference's 0/0 for latents without information
        if not args.skip_synthetic:
            rng = np.random.default_rng(1)
            for name, represent in synthetic_cases(GRID).items():
                factors = np.stack([rng.integers(0, k, 10_000) for k in GRID], axis=1)
                got, said = [], []
                if not args.only_added:
                    got, said = intervention_metrics(ref, name, represent, GRID, quick)
                    got = array_metrics(ref, name, represent(factors), factors, quick | dci_sizes) + got
                got += code_metrics(ref, name, represent(factors), factors, quick["mig_n"])
                if tripod is not None:
                    got += forest_rows(tripod, name, represent(factors), factors, dci_sizes, "discrete" in name)
                rows += got
                notes += said
                print_table(got)
        for folder in args.codes:
            if not all((folder / f).is_file() for f in ("codes.npy", "factors.npy", "meta.json")):
                sys.exit(f"{folder} lacks codes.npy, factors.npy or meta.json; write it with `fqvae encode RUN "
                         "--out FOLDER`.")
            meta = json.loads((folder / "meta.json").read_text())
            name = f"{meta['model']} {meta['short_id']} ({'discrete' if meta['discrete'] else 'continuous'})"
            codes, factors = np.load(folder / "codes.npy"), np.load(folder / "factors.npy")
            got = array_metrics(ref, name, codes, factors, meta["protocol_sizes"] | dci_sizes)
            got += code_metrics(ref, name, codes, factors, meta["protocol_sizes"]["mig_n"])
            if tripod is not None:
                got += forest_rows(tripod, name, codes, factors, dci_sizes, bool(meta["discrete"]))
            rows += got
            print_table(got)
        if udr is not None:
            rng = np.random.default_rng(2)
            factors = np.stack([rng.integers(0, k, 1_000) for k in GRID], axis=1)
            scaled = factors / (np.array(GRID) - 1.0)
            models = [np.concatenate([scaled[:, perm] + rng.normal(0.0, 0.2, scaled.shape),
                                      rng.normal(0.0, 1.0, (1_000, 2))], axis=1)
                      for perm in (np.arange(6), rng.permutation(6), rng.permutation(6))]
            kls = [None, None, np.r_[np.ones(6), 0.005, 1.0]]  # model 2's first noise latent is filtered out
            got = udr_rows(udr, "3 noisy models of 1,000 rows", models, kls)
            rows += got
            print_table(got)
        if args.run:
            import torch

            from fqvae_cli.registry.store import Registry
            from fqvae_cli.runs.evaluation import load_run

            reg, device = Registry(args.db), torch.device("cpu")
            sizes = quick | {"factor_vae_train": args.run_points, "factor_vae_eval": args.run_points // 2,
                             "beta_vae_train": args.run_points, "beta_vae_eval": args.run_points // 2}
            for ref_name in args.run:
                loaded = load_run(reg, ref_name, device)
                name = f"{loaded.run.model} {loaded.run.short_id} encoder"
                got, said = intervention_metrics(ref, name, RunCodes(loaded, device),
                                                 tuple(loaded.dataset.space.sizes), sizes, seed=loaded.cfg.eval.seed)
                rows += got
                notes += said
                print_table(got)

    print("\nall rows")
    print_table(rows)
    print("\nsampled combinations")
    for note in notes:
        print("  " + note)
    print("\nlargest |difference| per metric")
    worst: dict[str, float] = {}
    for _, metric, ours, theirs in rows:
        worst[metric] = max(worst.get(metric, 0.0), abs(float(ours) - float(theirs)))
    for metric, diff in worst.items():
        print(f"  {metric:<36} {diff:.2e}")


if __name__ == "__main__":
    main()
