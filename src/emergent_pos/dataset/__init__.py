"""What the model reads and what the probe predicts: words, dictionary, prompts, labels."""
