"""Compile any nginx ``log_format`` string into a parser.

The format is a declared mapping: :data:`NGINX_VARS` says, for each nginx
variable, which canonical field it fills and with which converter.  The
compiler turns the format string into one anchored regex (one group per
variable) and the mapping into a list of (group, field, converter) steps.  This
is the general, careful path; ``ingress.py`` adds a faster split-based path for
the default ingress-nginx format and falls back to this one.
"""

from __future__ import annotations

import re

from preagg.errors import ParseError
from preagg.parse import fields as F

# Pseudo-fields that fill several canonical keys at once.
REQUEST = "<request>"
URI = "<uri>"

#: nginx variable -> (canonical field, converter).  Variables not listed are
#: matched (so the line still parses) and dropped.
NGINX_VARS: dict[str, tuple] = {
    "remote_addr": ("remote_addr", F.text),
    "remote_user": ("remote_user", F.text),
    "time_local": ("time", F.clf_time),
    "time_iso8601": ("time", F.iso_time),
    "msec": ("time", F.epoch_time),
    "request": (REQUEST, F.split_request),
    "request_method": ("method", F.text),
    "request_uri": (URI, F.split_uri),
    "uri": ("path", F.text),
    "document_uri": ("path", F.text),
    "args": ("query", F.text),
    "query_string": ("query", F.text),
    "server_protocol": ("protocol", F.text),
    "status": ("status", lambda v: F.to_int(v, "status")),
    "body_bytes_sent": ("body_bytes_sent", lambda v: F.to_int(v, "body_bytes_sent")),
    "request_length": ("request_length", lambda v: F.to_int(v, "request_length")),
    "request_time": ("request_time", lambda v: F.to_float(v, "request_time")),
    "http_referer": ("referer", F.text),
    "http_user_agent": ("user_agent", F.text),
    "host": ("host", F.text),
    "http_host": ("host", F.text),
    "proxy_upstream_name": ("upstream_name", F.text),
    # ingress-nginx also exposes the split parts directly; when logged they win.
    "namespace": ("namespace", F.text),
    "service_name": ("service", F.text),
    "service_port": ("service_port", F.text),
    "upstream_addr": ("upstream_addr", F.addr_list),
    "upstream_status": ("upstream_status", lambda v: F.int_list(v, "upstream_status")),
    "upstream_response_time": ("upstream_response_time", lambda v: F.float_list(v, "upstream_response_time")),
    "upstream_response_length": ("upstream_response_length", lambda v: F.int_list(v, "upstream_response_length")),
    "req_id": ("req_id", F.text),
    "request_id": ("req_id", F.text),
}

# Unquoted upstream lists contain ", " and " : " separators, so they need a
# pattern that spans them; no address or number contains a comma.
_LIST_VARS = {"upstream_addr", "upstream_status", "upstream_response_time",
              "upstream_response_length", "upstream_connect_time", "upstream_header_time",
              "upstream_bytes_received", "upstream_bytes_sent", "upstream_cache_status"}
_P_QUOTED = r'((?:[^"\\]|\\.)*)'      # nginx writes " as \x22; Apache writes \"
_P_BRACKET = r"([^\]]*)"
_P_LIST = r"([^\s,]+(?:(?:, | : )[^\s,]+)*)"
_P_TOKEN = r"(\S*)"
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _decode(line) -> str:
    if isinstance(line, (bytes, bytearray, memoryview)):
        return bytes(line).decode("utf-8", "replace")
    if not isinstance(line, str):
        raise ParseError(f"a log line must be str or bytes, not {type(line).__name__}", "bad_type")
    return line


def finish(rec: dict, namespace_hint=None) -> dict:
    """Derive namespace/service/port from ``upstream_name`` unless already set."""
    if rec["upstream_name"] is not None and rec["service"] is None:
        ns, svc, port = F.split_upstream_name(rec["upstream_name"], namespace_hint)
        rec["namespace"] = rec["namespace"] or ns
        rec["service"] = svc
        rec["service_port"] = rec["service_port"] or port
    return rec


class NginxFormat:
    """A parser for one nginx ``log_format``; call it with a line (str or bytes).

    Parameters
    ----------
    log_format : str
        The nginx ``log_format`` body, e.g. ``'$remote_addr - $remote_user [$time_local] ...'``.
    name : str
        Used in error messages.
    """

    def __init__(self, log_format: str, name: str = "custom"):
        self.name = name
        self.log_format = log_format
        self.variables: list[str] = []
        self._pieces: list[str] = []   # regex source, one literal or variable per piece
        self._piece_var: list = []     # variable name for variable pieces, else None
        pos = 0
        for m in _VAR.finditer(log_format):
            lit = log_format[pos:m.start()]
            if lit:
                self._pieces.append(re.escape(lit))
                self._piece_var.append(None)
            var = m.group(1) or m.group(2)
            prev = log_format[m.start() - 1] if m.start() else ""
            if prev == '"':
                pat = _P_QUOTED
            elif prev == "[":
                pat = _P_BRACKET
            elif var in _LIST_VARS:
                pat = _P_LIST
            else:
                pat = _P_TOKEN
            self._pieces.append(pat)
            self._piece_var.append(var)
            self.variables.append(var)
            pos = m.end()
        if pos < len(log_format):
            self._pieces.append(re.escape(log_format[pos:]))
            self._piece_var.append(None)
        if not self.variables:
            raise ValueError(f"log_format {log_format!r} has no $variables")
        self.regex = re.compile("".join(self._pieces) + r"\s*\Z")
        self._steps = [(i + 1, NGINX_VARS[v][0], NGINX_VARS[v][1])
                       for i, v in enumerate(self.variables) if v in NGINX_VARS]
        if not any(f == "time" for _, f, _ in self._steps):
            # Without a time the windows cannot place the event; refuse early.
            raise ValueError(f"log_format {log_format!r} logs no time ($time_local, $time_iso8601, $msec)")

    def __call__(self, line, namespace_hint=None, labels=None) -> dict:
        line = _decode(line).rstrip("\r\n")
        if not line.strip():
            raise ParseError("empty line", "empty")
        flags = ()
        m = self.regex.match(line)
        if m is None and _open_quote(line):
            # A line cut inside a quoted field (seen in real Apache logs): close the
            # quote so the request still counts, and say so in flags.
            m = self.regex.match(line + '"')
            flags = ("unterminated_quote",)
        if m is None:
            raise ParseError(self._why(line), "format_mismatch")
        g = m.groups()
        rec = F.empty_record()
        for idx, field, conv in self._steps:
            v = conv(g[idx - 1])
            if field == REQUEST:
                rec["method"], rec["path"], rec["query"], rec["protocol"], f2 = v
                flags += f2
            elif field == URI:
                rec["path"], rec["query"] = v
            else:
                rec[field] = v
        if rec["time"] is None:
            raise ParseError("the time field is '-' or empty", "bad_time")
        rec["flags"] = flags
        if labels:
            rec["labels"] = labels
        return finish(rec, namespace_hint)

    def _why(self, line: str) -> str:
        """Explain which variable a non-matching line stopped at (error path only)."""
        good = 0
        for k in range(1, len(self._pieces) + 1):
            if re.match("".join(self._pieces[:k]), line) is None:
                break
            good = k
        if good == len(self._pieces):
            end = re.match("".join(self._pieces), line).end()
            return (f"line does not match the {self.name} format: unexpected text after the last field "
                    f"at column {end}: {line[end:end + 40]!r}")
        where = self._piece_var[good]
        m = re.match("".join(self._pieces[:good]), line) if good else None
        col = m.end() if m else 0
        what = f"${where}" if where else f"literal {self.log_format_literal(good)!r}"
        return (f"line does not match the {self.name} format: expected {what} at column {col}, "
                f"found {line[col:col + 40]!r}")

    def log_format_literal(self, k: int) -> str:
        """The literal text of piece ``k`` (for error messages)."""
        return re.sub(r"\\(.)", r"\1", self._pieces[k])


def _open_quote(line: str) -> bool:
    # Count quotes not escaped with a backslash (Apache); nginx never leaves a bare quote.
    return (line.count('"') - line.count('\\"')) % 2 == 1


def compile_log_format(log_format: str, name: str = "custom") -> NginxFormat:
    """Compile an nginx ``log_format`` string into a parser (see :class:`NginxFormat`)."""
    return NginxFormat(log_format, name)


#: ingress-nginx's default ``log-format-upstream``.
INGRESS_NGINX_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] '
    "[$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length "
    "$upstream_response_time $upstream_status $req_id"
)

#: nginx's built-in ``combined`` format.
COMBINED_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
