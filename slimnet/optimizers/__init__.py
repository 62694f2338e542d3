"""Width optimizers and what turns their trajectory into networks: the AutoSlim search, the
trajectory contract, width transfer, budgets and same-cost baselines."""
