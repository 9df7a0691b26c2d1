"""Benchmarks: ``bench_sim`` (the simulation chain), ``bench_train`` (a bundle's training step and inference)."""
