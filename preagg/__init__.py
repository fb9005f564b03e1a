"""ingress-patrol: preagg."""
