"""The network: search space and subnet configs, elastic layers, the supernet, extraction."""
