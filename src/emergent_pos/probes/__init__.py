"""Linear probes per layer: the probe and its fit, the torch solver, baselines and controls."""
