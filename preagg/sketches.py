"""Mergeable sketches and their compact wire form inside :class:`records.Sketch`.

Why these codecs: sketches travel in every latency / unique-count metric point so that 10 s
windows roll up to 1 min and 1 h *exactly* (bin-wise / register-wise merge), and the metrics
topic must stay ~100x smaller than the raw logs. So:

* DDSketch (``ddsketch`` package, relative accuracy 0.5 % so p99 is well inside 1 %): only the
  non-empty bins are written, as zlib-compressed JSON ``{"a": accuracy, "z": zero_count,
  "k": [key deltas], "c": [counts], "s": sum, "lo": min, "hi": max}`` (``params.enc``);
  latencies are >= 0 so no negative store.
* HyperLogLog (datasketches ``hll_sketch``, lg_k 12, HLL_4): the library's compact bytes.
* Heavy hitters (datasketches ``frequent_strings_sketch``): the library's bytes, zlib-compressed
  (client addresses compress ~2x; HLL registers do not, so HLL bytes are left as they are).
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from bisect import bisect_right
from collections import deque
from itertools import accumulate, compress
from operator import add, sub
from typing import Iterable

import datasketches as ds
from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore

from patrol.records import Sketch

__all__ = [
    "DD_ACCURACY", "HLL_LG_K", "TOPK_LG_MAX", "dd_from_counts", "dd_from_bins", "dd_key", "dd_start", "dd_to_sketch", "dd_from_sketch", "dd_merge",
    "hll_from", "hll_to_sketch", "hll_from_sketch", "hll_union", "topk_from_counts", "topk_to_sketch",
    "topk_from_sketch", "topk_items",
]

DD_ACCURACY = 0.005
HLL_LG_K = 12
TOPK_LG_MAX = 6  # 64 counters: enough to keep the top ~10 clients exact on a skewed mix


def constructor(cls, names: tuple[str, ...]):
    """``f(*values)`` = ``cls.model_construct(**dict(zip(names, values)))``, without its per-call work.

    Why: window close builds a model per point and per wire sketch, and ``model_construct``
    walks every field's aliases and defaults on each call (~15 us here, ~0.5 us per line at
    10 s windows). This builds the same instance: ``__dict__`` in field order with the same
    defaults, fields set = ``names``, no extra, no private state. Models where that would not
    hold (aliases, post-init, required fields not in ``names``, default factories, extra=allow)
    get ``model_construct`` itself.
    """
    fields = cls.__pydantic_fields__
    plain = (not cls.__pydantic_post_init__ and not cls.__pydantic_root_model__
             and cls.model_config.get("extra") != "allow" and set(names) <= set(fields)
             and all(f.alias is None and f.validation_alias is None for f in fields.values())
             and all(n in names or (not f.is_required() and f.default_factory is None) for n, f in fields.items()))
    if not plain:
        return lambda *values: cls.model_construct(**dict(zip(names, values)))
    # defaults as model_construct takes them (get_default copies mutable ones: none here)
    template = {n: (None if n in names else f.get_default(call_default_factory=True, validated_data={}))
                for n, f in fields.items()}
    passed = frozenset(names)
    new, put = cls.__new__, object.__setattr__

    def make(*values):
        m = new(cls)
        d = template.copy()  # keeps field order; update() only replaces values
        d.update(zip(names, values))
        put(m, "__dict__", d)
        put(m, "__pydantic_fields_set__", set(passed))
        put(m, "__pydantic_extra__", None)
        put(m, "__pydantic_private__", None)
        return m

    return make


_new_sketch = constructor(Sketch, ("type", "data", "params"))


def _sketch(type: str, raw: bytes, **params) -> Sketch:
    """``Sketch.from_bytes`` without validation: the fields are of their declared types here
    (a known type name, base64 text, str -> int/float/str params), and validating cost ~10 us per
    sketch at window close; tests/test_sketches.py checks the result equals the validated one."""
    return _new_sketch(type, base64.b64encode(raw).decode(), params)


# -- DDSketch --------------------------------------------------------------------------------
def dd_from_counts(counts: Iterable[tuple[float, int]], accuracy: float = DD_ACCURACY) -> DDSketch:
    """Build a DDSketch from ``(value, weight)`` pairs (values >= 0, integer weights).

    The same sketch as ``add(v, w)`` for each pair in order (same bins, count, min, max, and the
    sum accumulated in the same order), but each distinct bin is stored once: ``DDSketch.add``
    costs ~1.5 us per call and window close makes tens of thousands of them.
    """
    sk = DDSketch(relative_accuracy=accuracy)
    m = sk._mapping
    if type(m) is not LogarithmicMapping:  # the key formula below is LogarithmicMapping's
        for v, w in counts:
            sk.add(v, w)
        return sk
    mult, off, tiny = m._multiplier, m._offset, m.min_possible
    log, ceil = math.log, math.ceil
    # value -> bin key, kept across windows: latencies have ms resolution, so the same few
    # thousand values come back in every window and every series
    keys = _KEYS.setdefault((mult, off), {})
    if len(keys) > 200_000:
        keys.clear()
    kget = keys.get
    bins: dict[int, int] = {}
    get = bins.get
    zero, n, total, lo, hi = 0, 0, sk._sum, sk._min, sk._max
    for v, w in counts:
        if not (v >= 0 and w > 0):  # not what window close passes: keep the library's checks
            sk = DDSketch(relative_accuracy=accuracy)
            for v2, w2 in counts:
                sk.add(v2, w2)
            return sk
        if v > tiny:
            k = kget(v)
            if k is None:
                k = keys[v] = int(ceil(log(v, 2) * mult) + off)  # LogarithmicMapping.key
            bins[k] = get(k, 0) + w
        else:
            zero += w
        n += w
        total += v * w
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    return _fill(sk, bins, zero, n, total, lo, hi)


def _fill(sk: DDSketch, bins: dict, zero: int, n: int, total: float, lo: float, hi: float) -> DDSketch:
    if bins:
        st = sk._store
        keys = sorted(bins)
        st._extend_range(keys[0], keys[-1])  # size the dense store once (add() would per new key)
        b, o = st.bins, st.offset
        for k in keys:
            b[k - o] += bins[k]
        st.count += n - zero
    sk._zero_count += zero
    sk._count += n
    sk._sum, sk._min, sk._max = total, lo, hi
    return sk


_KEYS: dict[tuple, dict[float, int]] = {}


def dd_key(accuracy: float = DD_ACCURACY):
    """``v -> bin key`` (``None`` for the zero bin) exactly as :func:`dd_from_counts` computes
    it, or ``None`` when the sketch's mapping is not the logarithmic one that formula is for."""
    m = DDSketch(relative_accuracy=accuracy)._mapping
    if type(m) is not LogarithmicMapping:
        return None
    mult, off, tiny = m._multiplier, m._offset, m.min_possible
    log, ceil = math.log, math.ceil
    return lambda v: int(ceil(log(v, 2) * mult) + off) if v > tiny else None


def dd_start(accuracy: float = DD_ACCURACY) -> tuple[float, float, float]:
    """``(sum, min, max)`` of an empty sketch: where :func:`dd_from_bins`' sums start."""
    sk = DDSketch(relative_accuracy=accuracy)
    return sk._sum, sk._min, sk._max


def dd_from_bins(bins: dict, zero: int, n: int, total: float, lo: float, hi: float,
                 accuracy: float = DD_ACCURACY) -> DDSketch:
    """The sketch :func:`dd_from_counts` builds, from its loop's results computed elsewhere
    (``preagg._fastloop.dd_accumulate``: bin key -> count, zero count, count, sum, min, max)."""
    return _fill(DDSketch(relative_accuracy=accuracy), bins, zero, n, total, lo, hi)


def dd_quantiles(sk: DDSketch, qs: Iterable[float]) -> list:
    """``[sk.get_quantile_value(q) for q in qs]`` with one cumulative pass over the bins.

    The library walks every (mostly empty) bin in Python per quantile; this is the same
    arithmetic (running sums in bin order, first bin whose running count exceeds the rank).
    """
    st = sk._store
    if sk._negative_store.count or type(st) is not DenseStore:
        return [sk.get_quantile_value(q) for q in qs]
    out, cum = [], None
    for q in qs:
        if q < 0 or q > 1 or sk._count == 0:
            out.append(None)
            continue
        rank = q * (sk._count - 1)
        if rank < sk._negative_store.count:  # (empty: kept for the same comparisons)
            out.append(sk.get_quantile_value(q))
        elif rank < sk._zero_count + sk._negative_store.count:
            out.append(0)
        else:
            r = rank - sk._zero_count - sk._negative_store.count
            if cum is None:
                cum = list(accumulate(st.bins))
            i = bisect_right(cum, r)
            out.append(sk._mapping.value(i + st.offset if i < len(cum) else st.max_key))
    return out


def dd_to_sketch(sk: DDSketch) -> Sketch:
    """Serialize non-empty bins compactly (delta-encoded keys) into a wire :class:`Sketch`."""
    store = sk._store
    bins = store.bins
    # compress(): the non-empty bins found in C (a dense store is mostly empty bins); keys as
    # deltas from the previous non-empty key (the first from 0), counts as ints when whole
    ks = list(compress(range(store.offset, store.offset + len(bins)), bins))
    keys = list(map(sub, ks, [0] + ks[:-1]))
    nz = list(compress(bins, bins))
    if all(map(float.is_integer, map(float, nz))):
        cnts = list(map(int, nz))
    else:
        cnts = [int(c) if float(c).is_integer() else c for c in nz]
    body = {"a": sk._relative_accuracy, "z": sk._zero_count, "k": keys, "c": cnts, "s": sk._sum,
            "lo": sk._min, "hi": sk._max}
    raw = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 9)
    return _sketch("ddsketch", raw, relative_accuracy=sk._relative_accuracy, enc="zlib-json")


def dd_from_sketch(s: Sketch) -> DDSketch:
    """Inverse of :func:`dd_to_sketch`."""
    raw = s.raw()
    body = json.loads(zlib.decompress(raw) if s.params.get("enc") == "zlib-json" else raw)
    sk = DDSketch(relative_accuracy=body["a"])
    k = 0
    store = sk._store
    for dk, c in zip(body["k"], body["c"]):
        k += dk
        store.add(k, c)
    sk._zero_count = body["z"]
    sk._count = float(sum(body["c"]) + body["z"])
    sk._sum = body["s"]
    sk._min = body["lo"]
    sk._max = body["hi"]
    return sk


def dd_merge(sketches: Iterable[DDSketch]) -> DDSketch | None:
    """Merge DDSketches bin-wise (exact: same result as sketching the union of the inputs)."""
    out = None
    for sk in sketches:
        if out is None:
            out = DDSketch(relative_accuracy=sk._relative_accuracy)
        if type(out._store) is DenseStore and type(sk._store) is DenseStore and out._mapping.gamma == sk._mapping.gamma:
            _dd_merge_into(out, sk)
        else:
            out.merge(sk)
    return out


def _dd_merge_into(out: DDSketch, sk: DDSketch) -> None:
    """``out.merge(sk)`` for dense stores, the same steps and float additions in the same order,
    with the bin-wise add as one C-level ``map`` (the library adds bin by bin in Python, every
    dense bin between the input's min and max key: ~1/15 of a 10 s window's close)."""
    if sk.count == 0:
        return
    if out._count == 0:
        out._copy(sk)
        return
    a, b = out._store, sk._store
    if b.count != 0:  # DenseStore.merge
        if a.count == 0:
            a.copy(b)
        else:
            if b.min_key < a.min_key or b.max_key > a.max_key:
                a._extend_range(b.min_key, b.max_key)
            i, j, n = b.min_key - a.offset, b.min_key - b.offset, b.max_key - b.min_key + 1
            a.bins[i:i + n] = map(add, a.bins[i:i + n], b.bins[j:j + n])
            a.count += b.count
    out._negative_store.merge(sk._negative_store)
    out._zero_count += sk._zero_count
    out._count += sk._count
    out._sum += sk._sum
    if sk._min < out._min:
        out._min = sk._min
    if sk._max > out._max:
        out._max = sk._max


# -- HyperLogLog -----------------------------------------------------------------------------
def hll_from(items: Iterable[str | bytes], lg_k: int = HLL_LG_K) -> ds.hll_sketch:
    """HLL sketch of ``items`` (bytes are decoded so fast and slow paths hash the same text).

    Returned through a union (see :func:`hll_union`) so the estimate depends only on the registers.
    """
    sk = ds.hll_sketch(lg_k, ds.tgt_hll_type.HLL_4)
    up = sk.update
    items = items if isinstance(items, list) else list(items)
    if set(map(type, items)) <= {str}:  # the usual case (window close passes text): a C-level loop
        deque(map(up, items), 0)
    else:
        for it in items:
            up(it.decode("utf-8", "replace") if isinstance(it, bytes) else it)
    return hll_union([sk], lg_k)


def hll_to_sketch(sk: ds.hll_sketch) -> Sketch:
    return _sketch("hll", sk.serialize_compact(), lg_k=sk.lg_config_k)


def hll_from_sketch(s: Sketch) -> ds.hll_sketch:
    return ds.hll_sketch.deserialize(s.raw())


def hll_union(sketches: Iterable[ds.hll_sketch], lg_k: int = HLL_LG_K) -> ds.hll_sketch:
    """Register-wise union (exact w.r.t. sketching all items at once).

    A sketch fed directly estimates with HIP, which depends on insertion order; the register-only
    estimator does not, so a 60 s window and the union of its six 10 s windows report exactly the
    same number.
    """
    u = ds.hll_union(lg_k)
    for sk in sketches:
        u.update(sk)
    res = u.get_result(ds.tgt_hll_type.HLL_4)
    # Canonical estimator: merging the result with itself keeps the registers and sets the
    # out-of-order flag, so the estimate never depends on how the registers were reached
    # (a union whose first input was in list mode keeps HIP otherwise).
    c = ds.hll_union(lg_k)
    c.update(res)
    c.update(res)
    return c.get_result(ds.tgt_hll_type.HLL_4)


# -- heavy hitters ---------------------------------------------------------------------------
def topk_from_counts(counts: Iterable[tuple[str, int]] | dict[str, int], lg_max: int = TOPK_LG_MAX) -> ds.frequent_strings_sketch:
    sk = ds.frequent_strings_sketch(lg_max)
    if isinstance(counts, dict):  # str -> int counts from window close: one C-level loop
        ws = counts.values()
        if set(map(type, ws)) <= {int}:
            deque(map(sk.update, counts, ws), 0)
            return sk
        counts = counts.items()
    for item, w in counts:
        sk.update(item, int(w))
    return sk


def topk_to_sketch(sk: ds.frequent_strings_sketch) -> Sketch:
    return _sketch("topk", zlib.compress(sk.serialize(), 9), lg_max=TOPK_LG_MAX, enc="zlib")


def topk_from_sketch(s: Sketch) -> ds.frequent_strings_sketch:
    raw = s.raw()
    return ds.frequent_strings_sketch.deserialize(zlib.decompress(raw) if s.params.get("enc") == "zlib" else raw)


def topk_items(sk: ds.frequent_strings_sketch, n: int = 10) -> list[tuple[str, int]]:
    """Top ``n`` items by estimate (no false negatives above the sketch's error bound)."""
    rows = sk.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
    return [(r[0], int(r[1])) for r in rows[:n]]
