"""Errors raised by the pure pre-aggregation core (no I/O here)."""


class ParseError(ValueError):
    """A log line that cannot be parsed; ``reason`` says why, ``code`` is machine-readable."""

    def __init__(self, reason: str, code: str = "parse_error"):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class WindowError(ValueError):
    """An event the window stage rejects: ``code`` is ``late`` or ``future``."""

    def __init__(self, reason: str, code: str):
        super().__init__(reason)
        self.reason = reason
        self.code = code
