"""Mechanism: attention heads, logit attribution, causal interventions and per-token read-outs of the probes."""
