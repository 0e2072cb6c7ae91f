"""The paper's figures from a trained run: traversals (Figs. 2-4), latent swaps (Fig. 8), NMI and DCI
importance heatmaps (Figs. 5-7), codebook usage (Fig. 9). Pure functions of a model, a dataset and
arrays; writing and recording the files is the caller's job."""
