"""Local simulation: the traffic generator, the embedded broker, a local redis-server and the demo evaluation."""
