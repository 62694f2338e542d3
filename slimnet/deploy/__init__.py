"""What ships and how fast it runs: exporters, latency measurement and the latency model."""
