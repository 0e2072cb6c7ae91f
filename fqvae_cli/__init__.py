"""fqvae: train, evaluate and compare the models of "Disentanglement with Factor Quantized
Variational Autoencoders" (FactorQVAE) from one command line, with every run in a results registry."""

__version__ = "0.1.0"
