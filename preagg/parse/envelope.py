"""Shipper envelopes: the access-log line wrapped in JSON by Fluent Bit, Filebeat, Vector.

The line is in ``log`` (Fluent Bit, Docker json-file) or ``message`` (Filebeat,
Vector); Kubernetes metadata sits under ``kubernetes`` in one of three shapes.
The metadata becomes the record's ``labels`` (flat ``dict[str, str]``):
``namespace``, ``pod``, ``container``, ``node`` and one ``label.<key>`` per pod
label.  The namespace is also the hint for splitting ``$proxy_upstream_name``.
"""

from __future__ import annotations

import re

from patrol.preagg.errors import ParseError
from patrol.preagg.parse.jsonfmt import load_object

# containerd/CRI-O files: "<RFC3339Nano> stdout F <line>" (F = full, P = partial).
_CRI = re.compile(r"^\d{4}-\d\d-\d\dT\S+ (?:stdout|stderr) [FP] ")

_META_KEYS = (  # (label, [paths to try]) for Fluent Bit, Filebeat, Vector
    ("namespace", (("namespace_name",), ("namespace",), ("pod_namespace",))),
    ("pod", (("pod_name",), ("pod", "name"), ("pod_name",))),
    ("container", (("container_name",), ("container", "name"))),
    ("node", (("host",), ("node", "name"), ("pod_node_name",))),
)


def _dig(d, path):
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d if isinstance(d, (str, int, float)) and not isinstance(d, bool) else None


def is_envelope(obj) -> bool:
    """True when a decoded JSON object wraps a log line in ``log`` or ``message``."""
    return isinstance(obj, dict) and (isinstance(obj.get("log"), str) or isinstance(obj.get("message"), str)) \
        and "status" not in obj and "response_code" not in obj and "DownstreamStatus" not in obj


def unwrap_envelope(obj):
    """Split a shipper envelope into ``(line, labels, namespace)``.

    Parameters
    ----------
    obj : dict, str or bytes
        The envelope, decoded or as the raw JSON line.

    Returns
    -------
    tuple
        ``line`` (str, trailing newline removed), ``labels`` (dict[str, str]) and
        the pod ``namespace`` (str or None).

    Raises
    ------
    ParseError
        ``bad_envelope`` when there is no ``log``/``message`` string.
    """
    if not isinstance(obj, dict):
        obj = load_object(obj)
    line = obj.get("log")
    if not isinstance(line, str):
        line = obj.get("message")
    if not isinstance(line, str):
        raise ParseError("envelope has no 'log' or 'message' string", "bad_envelope")
    labels: dict[str, str] = {}
    k8s = obj.get("kubernetes")
    if isinstance(k8s, dict):
        for label, paths in _META_KEYS:
            for path in paths:
                v = _dig(k8s, path)
                if v is not None:
                    labels[label] = str(v)
                    break
        pod_labels = k8s.get("labels")
        if not isinstance(pod_labels, dict):
            pod_labels = k8s.get("pod_labels")
        if isinstance(pod_labels, dict):
            for k, v in pod_labels.items():
                if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                    labels["label." + str(k)] = str(v)
    return line.rstrip("\r\n"), labels, labels.get("namespace")


def strip_cri(line: str) -> str | None:
    """Remove a containerd/CRI-O log prefix; None when the line has none."""
    m = _CRI.match(line)
    return line[m.end():] if m else None
