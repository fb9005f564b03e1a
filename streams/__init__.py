"""ingress-patrol: streams."""
