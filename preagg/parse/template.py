"""Compile a text log-format template (nginx ``$var`` or Envoy ``%OP%``) into a parser.

A template is literal text with placeholders.  Each format module declares a
table ``placeholder -> (canonical field, converter[, weak])``; this module turns
the template into one anchored regex (one group per placeholder) and the table
into a list of steps.  Placeholders not in the table are matched and dropped,
so any custom format still parses.  "weak" steps only fill a field nobody else
filled (e.g. Envoy's ``X-Forwarded-For`` vs. the downstream address).
"""

from __future__ import annotations

import re

from patrol.preagg.errors import ParseError
from patrol.preagg.parse import fields as F

# Pseudo-fields that fill several canonical keys at once.
REQUEST = "<request>"   # "GET /p?q HTTP/1.1" -> method, path, query, protocol, flags
URI = "<uri>"           # "/p?q" -> path, query
FLAGS = "<flags>"       # extra flags (e.g. Envoy response flags)

# nginx writes " as \x22; Apache/Envoy write \". Unrolled-loop form: one character
# class run per stretch instead of an alternation per character (10x faster).
_P_QUOTED = r'([^"\\]*(?:\\.[^"\\]*)*)'
_P_BRACKET = r"([^\]]*)"
_P_LIST = r"([^\s,]+(?:(?:, | : )[^\s,]+)*)"
_P_TOKEN = r"(\S*)"


def decode_line(line) -> str:
    """Accept str or bytes (UTF-8; invalid bytes become U+FFFD); reject anything else."""
    if isinstance(line, str):
        return line
    if isinstance(line, (bytes, bytearray, memoryview)):
        return bytes(line).decode("utf-8", "replace")
    raise ParseError(f"a log line must be str or bytes, not {type(line).__name__}", "bad_type")


def finish(rec: dict, namespace_hint=None) -> dict:
    """Derive namespace/service/port from ``upstream_name`` unless a format set them."""
    if rec["upstream_name"] is not None and rec["service"] is None:
        ns, svc, port = F.split_upstream_name(rec["upstream_name"], namespace_hint)
        rec["namespace"] = rec["namespace"] or ns
        rec["service"] = svc
        rec["service_port"] = rec["service_port"] or port
    return rec


def method_flags(rec: dict, flags: tuple) -> tuple:
    """Add ``bad_method`` when a format logged the method on its own (not via
    ``$request``) and it is not a known one, so every format flags alike."""
    m = rec["method"]
    if m is not None and m not in F.KNOWN_METHODS and "bad_method" not in flags:
        return flags + ("bad_method",)
    return flags


def apply_steps(rec: dict, steps, values) -> tuple:
    """Run (field, converter, weak) steps over ``values``; return extra flags."""
    flags = ()
    for (field, conv, weak), raw in zip(steps, values):
        if raw is None:
            continue
        v = conv(raw)
        if field == REQUEST:
            rec["method"], rec["path"], rec["query"], rec["protocol"], f2 = v
            flags += f2
        elif field == URI:
            rec["path"], rec["query"] = v
        elif field == FLAGS:
            flags += v
        elif type(field) is tuple:
            # One value that fills several fields (an Envoy cluster name -> ns/svc/port).
            for f, x in zip(field, v):
                if not weak or rec[f] is None:
                    rec[f] = x
        elif not weak or rec[field] is None or rec[field] == []:
            rec[field] = v
    return flags


class TemplateFormat:
    """A parser for one text log template; call it with a line (str or bytes).

    Parameters
    ----------
    template : str
        The format, e.g. ``'$remote_addr - $remote_user [$time_local] ...'``.
    placeholder : re.Pattern
        Finds placeholders; group 1 (or 2) is the placeholder's name.
    table : dict
        ``name -> (field, converter)`` or ``(field, converter, weak)``.
    name : str
        Used in error messages.
    list_names : set
        Placeholders written unquoted as ``a, b : c`` lists (nginx upstream variables).
    normalize : callable, optional
        Maps a placeholder as written to its table key (Envoy: ``%REQ(user-agent):20%``
        -> ``REQ(USER-AGENT)``).
    """

    def __init__(self, template: str, placeholder: re.Pattern, table: dict, name: str,
                 list_names=frozenset(), normalize=None):
        self.name = name
        self.template = template
        self.names: list[str] = []
        self._pieces: list[str] = []
        self._piece_name: list = []
        self._literals: list = []
        pos = 0
        for m in placeholder.finditer(template):
            lit = template[pos:m.start()]
            if lit:
                self._add(re.escape(lit), None, lit)
            var = m.group(1) or m.group(2)
            if normalize is not None:
                var = normalize(var)
            prev = template[m.start() - 1] if m.start() else ""
            nxt = template[m.end():m.end() + 1]
            if prev == '"' and nxt == '"':
                pat = _P_QUOTED
            elif prev == "[" and nxt == "]":
                pat = _P_BRACKET
            elif var in list_names:
                pat = _P_LIST
            else:
                pat = _P_TOKEN
            self._add(pat, var, None)
            self.names.append(var)
            pos = m.end()
        if pos < len(template):
            self._add(re.escape(template[pos:]), None, template[pos:])
        if not self.names:
            raise ValueError(f"log format {template!r} has no placeholders")
        self.regex = re.compile("".join(self._pieces) + r"\s*\Z")
        self._idx = [i for i, v in enumerate(self.names) if v in table]
        steps = [(table[self.names[i]] + (False,))[:3] for i in self._idx]
        # Weak steps run last so they only fill what strong ones left empty.
        order = sorted(range(len(steps)), key=lambda k: steps[k][2])
        self._idx = [self._idx[k] for k in order]
        self._steps = [steps[k] for k in order]
        if not any(s[0] == "time" for s in self._steps):
            # Without a time the windows cannot place the event; refuse at compile time.
            raise ValueError(f"log format {template!r} logs no time")

    def _add(self, pat, var, lit):
        self._pieces.append(pat)
        self._piece_name.append(var)
        self._literals.append(lit)

    def __call__(self, line, namespace_hint=None, labels=None) -> dict:
        line = decode_line(line).rstrip("\r\n")
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
            raise ParseError(self.why(line), "format_mismatch")
        g = m.groups()
        rec = F.empty_record()
        flags += apply_steps(rec, self._steps, [g[i] for i in self._idx])
        if rec["time"] is None:
            raise ParseError("the time field is '-' or empty", "bad_time")
        rec["flags"] = method_flags(rec, flags)
        if labels:
            rec["labels"] = labels
        return finish(rec, namespace_hint)

    def why(self, line: str) -> str:
        """Explain where a non-matching line departs from the format (error path only)."""
        if not hasattr(self, "_prefixes"):
            # Compiled once, on the first bad line: one regex per prefix of the template.
            self._prefixes = [re.compile("".join(self._pieces[:k])) for k in range(1, len(self._pieces) + 1)]
        good, end = 0, 0
        for k, rx in enumerate(self._prefixes, 1):
            m = rx.match(line)
            if m is None:
                break
            good, end = k, m.end()
        if good == len(self._pieces):
            return (f"line does not match the {self.name} format: unexpected text after the last "
                    f"field at column {end}: {line[end:end + 40]!r}")
        var = self._piece_name[good]
        what = f"field {var!r}" if var else f"{self._literals[good]!r}"
        return (f"line does not match the {self.name} format: expected {what} at column {end}, "
                f"found {line[end:end + 40]!r}")


def _open_quote(line: str) -> bool:
    # Quotes not escaped with a backslash; nginx never leaves a bare quote, Apache may.
    return (line.count('"') - line.count('\\"')) % 2 == 1
