"""Activations: batched forward passes through TransformerLens hooks, stored by hook name."""
