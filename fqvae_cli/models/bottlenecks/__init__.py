"""Bottlenecks, one module each: its settings (a ComponentConfig), its kind record and its nn.Module
(base.py holds what they share). The zoo (fqvae_cli.models.zoo) names the bottleneck of every model."""
