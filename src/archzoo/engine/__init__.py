"""Training engine: train loop, checkpoints, distributed, claims, benchmarks, report."""
