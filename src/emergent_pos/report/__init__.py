"""Metrics with intervals and the figures: computed once, from the probes stage's predictions."""
