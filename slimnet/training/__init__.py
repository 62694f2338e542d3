"""Training networks: from scratch, the sandwich-rule supernet, jointly slimmable networks, and
what they share (optimizer, recipe, checkpoints, data-parallel gradient sums, trained files)."""
