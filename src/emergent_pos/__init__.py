"""Emergent positional embeddings: do language models track which word a token is in?

One subpackage per pipeline phase, each with its config dataclass beside its code:
``model`` (organism, build, load), ``dataset`` (words, dictionary, prompts, labels),
``activations`` (extraction, hook-keyed HDF5 store), ``probes`` (linear probe, torch
solver, baselines and controls, per-layer runner) and ``report`` (metrics, plots);
``config`` validates params, ``io`` holds files and stage plumbing.
"""
