"""Training networks: from scratch, the sandwich-rule supernet, jointly slimmable networks, and
what they share (optimizer, recipe, checkpoints, data parallelism, trained files)."""
