"""ingress-patrol: detectors."""
