"""DeployForge benchmarks: `make bench` (or `python -m bench`).

Each benchmark measures a DeployForge path and a baseline in the same run, on
the same servers, and reports the ratio between them; the run rewrites the
results section of docs/performance.md. Nothing here asserts a timing.
"""
