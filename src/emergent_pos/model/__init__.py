"""The model under study: the embedded organism, building ``data/model``, loading it back."""
