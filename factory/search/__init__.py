"""Finding subnets: evaluation with the supernet, the accuracy predictor, evolution and the
keras-tuner strategies under latency, size and device constraints."""
