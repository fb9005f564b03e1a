"""ingress-patrol: benchmarks."""
