"""Numbers about results: scores of a network on a batch stream, verdicts, rank agreement."""
