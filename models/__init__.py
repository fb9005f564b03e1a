"""ingress-patrol: models."""
