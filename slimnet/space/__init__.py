"""The search space and its costs: channel spaces, architecture blueprints, arch specs, FLOPs."""
