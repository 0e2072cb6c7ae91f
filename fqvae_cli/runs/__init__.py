"""Orchestration over the registry: evaluating runs, the sweeps and workers that train them, and the tables
built from them (cells, what each cell rests on). Commands call these; these call training, figures,
metrics and the registry."""
