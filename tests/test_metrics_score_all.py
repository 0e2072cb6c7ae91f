"""The one entry point: metric names, the protocol sizes each reads, the rows each takes, and `score_all`
computing any chosen set with each metric's numbers independent of the others."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import grid_factors

from fqvae_cli.errors import ConfigError, UsageError
from fqvae_cli.metrics import (
    DEFAULT_METRICS,
    METRICS,
    PROTOCOL_SIZES,
    parse_metrics,
    protocol_rows,
    require_rows,
    require_sizes,
    rows_needed,
    score_all,
    score_steps,
)

RUNNERS = {name: m.run for name, m in METRICS.items()}  # each metric's runner is on its record

SIZES = {"dci_train": 300, "dci_test": 100, "infomec_n": 200, "mig_n": 400, "sap_train": 200, "sap_test": 100,
         "modularity_train": 250, "modularity_test": 150, "factor_vae_batch": 8, "factor_vae_train": 30,
         "factor_vae_eval": 20, "factor_vae_variance": 100, "beta_vae_batch": 8, "beta_vae_train": 30,
         "beta_vae_eval": 20}


def test_names_runners_and_sizes_agree():
    assert list(RUNNERS) == list(METRICS)
    assert set(SIZES) == set(PROTOCOL_SIZES)
    assert DEFAULT_METRICS == ("dci", "infomec")


def test_the_paper_protocol_is_the_published_one():
    from fqvae_cli.metrics import base as mutual_info  # the discretiser lives with what every metric shares
    from fqvae_cli.metrics import beta_vae, factor_vae, sap
    from fqvae_cli.runs.evaluation import protocol_sizes

    paper = protocol_sizes("paper")
    assert {k: paper[k] for k in PROTOCOL_SIZES} == {
        "dci_train": 10_000, "dci_test": 5_000, "infomec_n": 10_000, "mig_n": 10_000, "sap_train": 10_000,
        "sap_test": 5_000, "modularity_train": 10_000, "modularity_test": 5_000,
        "factor_vae_batch": factor_vae.BATCH_SIZE, "factor_vae_train": factor_vae.NUM_TRAIN,
        "factor_vae_eval": factor_vae.NUM_EVAL, "factor_vae_variance": factor_vae.NUM_VARIANCE_ESTIMATE,
        "beta_vae_batch": beta_vae.BATCH_SIZE, "beta_vae_train": beta_vae.NUM_TRAIN,
        "beta_vae_eval": beta_vae.NUM_EVAL}
    assert (factor_vae.BATCH_SIZE, factor_vae.NUM_TRAIN, factor_vae.NUM_EVAL) == (64, 10_000, 5_000)
    assert (factor_vae.NUM_VARIANCE_ESTIMATE, factor_vae.PRUNE_THRESHOLD) == (10_000, 0.05)
    assert (beta_vae.BATCH_SIZE, beta_vae.NUM_TRAIN, beta_vae.NUM_EVAL) == (64, 10_000, 5_000)
    assert mutual_info.NUM_BINS == 20 and sap.SVM_C == 0.01
    # Both shipped protocols draw the rows they always drew: the new metrics fit inside them.
    assert protocol_rows(paper) == 15_000 and protocol_rows(protocol_sizes("quick")) == 10_000


def test_parse_metrics():
    assert parse_metrics(None) == DEFAULT_METRICS
    assert parse_metrics("sap, MIG,dci") == ("dci", "mig", "sap")  # METRICS order, case and spaces ignored
    assert parse_metrics(["mig", "factor-vae"]) == ("mig", "factor_vae")
    assert parse_metrics("all") == tuple(METRICS)
    assert parse_metrics("all", interventions=False) == ("dci", "infomec", "mig", "sap", "modularity", "irs",
                                                         "unsupervised")
    with pytest.raises(UsageError, match="unknown metric 'mgi'; choose from: dci, infomec, mig, sap, modularity, "
                                         "factor_vae, beta_vae, irs, unsupervised, or all"):
        parse_metrics("dci,mgi")
    with pytest.raises(UsageError, match="needs the model and the dataset.*fqvae evaluate RUN --metrics beta_vae"):
        parse_metrics("beta_vae", interventions=False)


def test_rows_and_sizes():
    assert rows_needed(SIZES, ["dci"]) == 400 and rows_needed(SIZES, ["mig", "sap"]) == 400
    assert rows_needed(SIZES, ["factor_vae"]) == 0
    assert protocol_rows(SIZES) == 400  # modularity 250 + 150
    assert protocol_rows({"dci_train": 10, "dci_test": 5, "infomec_n": 30}) == 30  # only what a protocol sizes
    with pytest.raises(UsageError) as err:
        require_rows(399, SIZES, ["sap", "modularity"])
    assert str(err.value) == ("codes has 399 rows but Modularity and Explicitness needs 400 "
                              "(modularity_train 250 + modularity_test 150).")
    require_rows(400, SIZES, list(METRICS))
    with pytest.raises(ConfigError, match="protocol 'mine' has no size 'mig_n', which MIG \\(Chen et al. 2018\\)"):
        require_sizes({"dci_train": 1, "dci_test": 1, "infomec_n": 1}, ["mig"], "mine")
    assert score_steps(6, METRICS) == 6 + 1 + 1 + 6 + 6 + 3 + 2 + 1 + 1


def toy_represent(f: np.ndarray) -> np.ndarray:
    return np.asarray(f, dtype=np.float64) * [1.0, 2.0]


def test_every_metric_in_one_call_with_each_number_independent_of_the_others():
    f = grid_factors((2, 4), 50)  # 400 rows
    rng = np.random.default_rng(0)
    z = np.concatenate([f + rng.normal(0, 0.3, f.shape), rng.normal(size=(400, 1))], axis=1)

    class Counter:
        n = 0

        def advance(self, k: int = 1) -> None:
            self.n += k

        def status(self, text: str) -> None:
            pass

    counter = Counter()
    everything = score_all(z, f, discrete=False, sizes=SIZES, metrics=list(METRICS), factor_sizes=(2, 4),
                           represent=toy_represent, progress=counter)
    assert list(everything.values) == [k for m in METRICS.values() for k in m.keys]
    assert counter.n == score_steps(2, METRICS)
    assert isinstance(everything.values["active_latents"], int)
    for name in METRICS:
        alone = score_all(z, f, discrete=False, sizes=SIZES, metrics=[name], factor_sizes=(2, 4),
                          represent=toy_represent)
        assert alone.values == {k: everything.values[k] for k in METRICS[name].keys}, name
    assert everything.values["factor_vae"] == 1.0 and everything.values["beta_vae"] == 1.0


def test_score_all_refusals():
    f = grid_factors((2, 4), 50)
    with pytest.raises(UsageError, match="factor_vae need the factor grid and a representation function"):
        score_all(f, f, discrete=True, sizes=SIZES, metrics=["factor_vae"])
    with pytest.raises(UsageError, match="codes has 300 rows but DCI needs 400"):
        score_all(f[:300], f[:300], discrete=True, sizes=SIZES)
    # Intervention scores alone take no rows at all.
    out = score_all(None, None, discrete=False, sizes=SIZES, metrics=["beta_vae"], factor_sizes=(2, 4),
                    represent=toy_represent)
    assert out.values == {"beta_vae": 1.0, "beta_vae_train": 1.0}
