"""The six DVC stages, one module each, so each stage depends on its own code only."""
