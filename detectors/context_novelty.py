"""Context novelty: is the recent *pattern* of values one this series has shown before?

A contextual anomaly detector in the family of CAD OSE (Contextual Anomaly
Detector, open-source edition, by M. Smirnov and Y. Fedorov; among the leaders on the
NAB scoreboard), written from its published description, not from its code.
It flags novel sequences of recent values rather than large residuals:

1. **Encoding.** Each value is put into one of ``2 ** n_bits`` equal-width
   buckets between the minimum and maximum the series has shown so far
   (CAD OSE's ``numNormValueBits`` encoder; CAD OSE as run in NAB is given the
   whole file's min/max, here the range grows online, and a value outside it
   widens it and lands in an edge bucket). When the range grows, what was
   learnt is re-bucketed rather than thrown away: each old bucket's centre
   falls into one new bucket (left semi-contexts that become equal merge), and
   after a growth of at least one bucket width a predicted old bucket predicts
   every new bucket it overlaps (its values may fall in either).
2. **Contexts.** A context pairs a *left semi-context* -- the last ``k``
   buckets, ``k = 1 .. max_left`` -- with a *right semi-context*, the bucket
   that followed it. They are learnt online into a dictionary: each left
   semi-context keeps the set of right buckets seen after it (a bit mask).
   As in CAD, a longer context is only learnt once its shorter ones are known
   (the new point extends the run of matching orders by one), so the
   dictionary grows with the patterns that recur, not with every noisy
   sequence.
3. **Score.** The left semi-contexts that match the recent history *predict*
   their right buckets. ``1 - (predictions that came true) / (predictions
   made)`` is averaged with the fraction of this point's potential new
   contexts that were indeed new (``1 / (r + 1)`` when the point extends a run
   of ``r`` known orders, 0 when all ``max_left`` orders were known): CAD OSE's
   ``(1 - active/selected + new/potential) / 2``. 1 = never seen, 0 = fully
   predicted.
4. **Rest period.** Once a reported score reaches ``base_threshold`` the next
   ``rest_period`` points report 0 (CAD OSE's rest period: one alarm per
   episode). The first ``rest_period`` points (learning the range) report 0.

Bounded state (the service keeps one per series): the dictionary is a
set-associative cache of ``n_sets x n_ways`` entries (key ``uint32``: the
left buckets packed ``n_bits + 1`` bits each, which also encodes ``k``;
right-bucket mask ``uint16``; last-use tick ``uint32``). A new left
semi-context goes into the least recently used way of its set (LRU
forgetting: contexts the series stopped producing are forgotten first).
Defaults: 256 x 4 = 1024 entries, 10 240 bytes of dictionary plus 43 bytes
of scalars and history -- 10 283 bytes per series (JSON checkpoint ~13.9 KB),
under the 16 KB budget.

Not carried over from CAD OSE: its bit-level facts and partial matches and
its "active neuron" facts (ids of the contexts active at the previous step,
through which CAD reaches back further than one left semi-context). Here the
left semi-context *is* the last ``k`` buckets, for ``k`` up to ``max_left``.

Parameters keep CAD OSE's published defaults (``max_left`` =
``maxLeftSemiContextsLenght`` 7, ``n_bits`` = ``numNormValueBits`` 3,
``base_threshold`` 0.75, ``rest_period`` = 150, the cap of its
``min(150, 3 % of the file)``; ``maxActiveNeuronsNum`` has no counterpart).

Sources: Smirnov, M., "CAD: Contextual Anomaly Detector", project README
(github.com/smirmik/CAD, 2016); the description and defaults of
``ContextualAnomalyDetector`` in the otsad package (Iturria, Carrasco,
Charramendieta, Conde, Herrera: "otsad: A package for online time-series
anomaly detectors", Neurocomputing 374, 2020); NAB (Lavin & Ahmad 2015;
Ahmad, Lavin, Purdy & Agha 2017, Neurocomputing 262) for the scoring and
the rest period's link to the probationary period. Variable-order context
models with a bounded dictionary are PPM's (Cleary & Witten 1984).

Examples
--------
>>> import numpy as np
>>> from patrol.detectors.context_novelty import ContextNoveltyDetector
>>> det = ContextNoveltyDetector(rest_period=20)
>>> wave = [0.0, 1.0, 2.0, 3.0, 2.0, 1.0]             # a pattern repeated 50 times
>>> s = [det.update(wave[i % 6], t=60.0 * i).score for i in range(300)]
>>> max(s[100:]) < 0.2                                # known pattern: not novel
True
>>> det.update(3.0, t=60.0 * 300).score              # 1 -> 3 never happened
1.0
>>> det.update(0.0, t=60.0 * 301).score              # inside the rest period
0.0
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from .base import Detector, DetectorResult

_HASH = np.uint64(2654435761)  # Knuth's multiplicative hash (golden ratio * 2^32)


class ContextNoveltyDetector(Detector):
    """CAD-style contextual novelty of the recent pattern of bucketed values.

    Parameters
    ----------
    n_bits : int
        Buckets are ``2 ** n_bits`` (1..4).
    max_left : int
        Longest left semi-context, in points (``max_left * (n_bits + 1) <= 32``).
    base_threshold : float
        Reported score at or above which the detector fires and rests.
    rest_period : int
        Points reported as 0 after a firing, and at the start of a series.
    n_sets, n_ways : int
        Dictionary size per series (``n_sets`` a power of two); LRU within a set.
    n_series : int
        Number of series scored together (batch path).
    """

    name = "context"

    def __init__(self, n_bits=3, max_left=7, base_threshold=0.75, rest_period=150, n_sets=256, n_ways=4,
                 n_series=1):
        if not 1 <= n_bits <= 4:
            raise ValueError("n_bits must be 1..4")
        if max_left < 1 or max_left * (n_bits + 1) > 32:
            raise ValueError("max_left * (n_bits + 1) must be <= 32")
        if n_sets < 1 or n_sets & (n_sets - 1):
            raise ValueError("n_sets must be a power of two")
        self.n_bits, self.max_left = int(n_bits), int(max_left)
        self.base_threshold, self.rest_period = float(base_threshold), int(rest_period)
        self.n_sets, self.n_ways = int(n_sets), int(n_ways)
        self.n_buckets = 1 << self.n_bits
        self._shift = np.uint64(32 - max(int(self.n_sets).bit_length() - 1, 0))
        self._widths = (np.arange(self.max_left, dtype=np.uint32) * np.uint32(self.n_bits + 1))
        super().__init__(n_series)

    def config(self):
        return dict(n_bits=self.n_bits, max_left=self.max_left, base_threshold=self.base_threshold,
                    rest_period=self.rest_period, n_sets=self.n_sets, n_ways=self.n_ways)

    def _shapes(self):
        m = self.n_sets * self.n_ways
        return {"n": (), "lo": (), "hi": (), "since": (), "tick": (), "hist": (self.max_left,),
                "keys": (m,), "masks": (m,), "used": (m,)}

    def _dtypes(self):
        return {"tick": np.uint32, "hist": np.uint8, "keys": np.uint32, "masks": np.uint16, "used": np.uint32}

    # -- pieces ----------------------------------------------------------
    def _bucket(self, y, lo, hi):
        span = hi - lo
        safe = np.where(span > 0, span, 1.0)
        b = np.floor((y - lo) / safe * self.n_buckets)
        b = np.where(span > 0, np.minimum(np.maximum(b, 0), self.n_buckets - 1), 0)
        return b.astype(np.intp)

    def _left_keys(self, hist):
        """Packed left semi-contexts of orders 1..max_left: ``(n, max_left)`` uint32."""
        nib = (hist.astype(np.uint32) + np.uint32(1)) << self._widths
        return np.cumsum(nib, axis=1, dtype=np.uint32)  # nibbles do not overlap: sum == or

    def _slots(self, keys):
        """First table index of each key's set: ``set * n_ways``."""
        h = (keys.astype(np.uint64) * _HASH) & np.uint64(0xFFFFFFFF)
        return ((h >> self._shift).astype(np.intp) % self.n_sets) * self.n_ways

    def _find(self, rows, keys):
        """Way of ``keys`` in its set (or -1), and the set's first index; any leading shape."""
        base = self._slots(keys)
        idx = base[..., None] + np.arange(self.n_ways)
        hit = self.s["keys"][rows[..., None], idx] == keys[..., None]
        way = np.where(hit.any(axis=-1), hit.argmax(axis=-1), -1)
        return way, base

    # -- batch path --------------------------------------------------------
    def update_many(self, values, t):
        """Score then learn one point for every series.

        Returns ``(score, z, expected, fired)`` arrays: ``score`` the reported
        novelty in [0, 1] (0 during the rest period), ``z`` its
        Gaussian-equivalent (``score = 1 - 2 Q(|z|)``), signed by the side of
        the value against ``expected``, the centre of the buckets the longest
        matching context predicted (NaN when none).
        """
        y, _ = self._prep(values, t)
        s = self.s
        ok = np.isfinite(y)
        rows = np.arange(self.n_series)
        L = self.max_left
        yy = np.where(ok, y, 0.0)
        first = s["n"] == 0
        lo = np.where(ok, np.where(first, yy, np.minimum(s["lo"], yy)), s["lo"])
        hi = np.where(ok, np.where(first, yy, np.maximum(s["hi"], yy)), s["hi"])
        grew = ok & ~first & ((lo < s["lo"]) | (hi > s["hi"]))
        if grew.any():  # new extreme: re-bucket what was learnt so far, so contexts keep their meaning
            self._rebucket(np.flatnonzero(grew), lo[grew], hi[grew])
        b = self._bucket(yy, lo, hi)
        bit = (np.uint16(1) << b.astype(np.uint16)).astype(np.uint16)
        hlen = np.minimum(s["n"], L).astype(np.intp)
        order = np.arange(1, L + 1)
        valid = order[None, :] <= hlen[:, None]                      # (n, L) orders with enough history

        keys = self._left_keys(s["hist"])
        way, base = self._find(rows[:, None], keys)
        found = valid & (way >= 0)
        at = base + np.maximum(way, 0)
        masks = np.where(found, s["masks"][rows[:, None], at], 0).astype(np.uint16)
        came_true = found & ((masks & bit[:, None]) != 0)
        predicted = _popcount16(masks).sum(axis=1)
        active = came_true.sum(axis=1)
        unpredicted = np.where(predicted > 0, 1.0 - active / np.maximum(predicted, 1), 1.0)
        run = np.cumprod(came_true, axis=1).sum(axis=1)              # known orders 1..run
        potential = np.minimum(run + 1, hlen)
        new_frac = np.where(potential > 0, (potential - run) / np.maximum(potential, 1), 1.0)
        raw = 0.5 * (unpredicted + new_frac)

        resting = (s["n"] < self.rest_period) | (s["since"] < self.rest_period)
        score = np.where(ok & ~resting, raw, 0.0)
        fired = score >= self.base_threshold

        # expected value: centre of the buckets predicted by the longest matching context
        deepest = np.where(found.any(axis=1), L - 1 - np.argmax(found[:, ::-1], axis=1), 0)
        pm = masks[rows, deepest]
        members = ((pm[:, None] >> np.arange(self.n_buckets, dtype=np.uint16)) & 1).astype(np.float64)
        cnt = members.sum(axis=1)
        centre = (members @ (np.arange(self.n_buckets) + 0.5)) / np.maximum(cnt, 1)
        expected = np.where(cnt > 0, s["lo"] + centre / self.n_buckets * (s["hi"] - s["lo"]), np.nan)
        mag = ndtri(np.minimum(0.5 + 0.5 * score, 1.0 - 1e-16))
        z = np.where(np.isfinite(expected) & (yy < expected), -mag, mag)

        self._learn_contexts(rows, keys, way, base, potential, bit, ok)
        s["lo"][:] = lo
        s["hi"][:] = hi
        s["since"][:] = np.where(ok, np.where(fired, 0.0, s["since"] + 1.0), s["since"])
        s["hist"][:] = np.where(ok[:, None], np.concatenate([b[:, None].astype(np.uint8), s["hist"][:, :-1]], axis=1),
                                s["hist"])
        s["n"][:] = np.where(ok, s["n"] + 1.0, s["n"])
        return score, z, expected, fired & ok

    def _rebucket(self, rows, lo1, hi1):
        """Map series ``rows``' history and dictionary from their old range to ``[lo1, hi1]``.

        Each old bucket stands for its centre value, which falls into one new
        bucket (a wider range merges neighbours). Left semi-contexts that
        become equal are merged (masks or-ed, latest use kept); each set keeps
        its ``n_ways`` most recently used entries.
        """
        s, B, L, W = self.s, self.n_buckets, self.max_left, self.n_ways
        m, size = rows.size, self.n_sets * self.n_ways
        lo0, hi0 = s["lo"][rows], s["hi"][rows]
        centres = lo0[:, None] + (np.arange(B) + 0.5) / B * (hi0 - lo0)[:, None]
        newb = self._bucket(centres, lo1[:, None], hi1[:, None])             # (m, B)
        s["hist"][rows] = np.take_along_axis(newb, s["hist"][rows].astype(np.intp), axis=1).astype(np.uint8)
        keys = s["keys"][rows]
        sid, ent = np.nonzero(keys)                                           # only the entries in use
        keys, masks, nu = keys[sid, ent], s["masks"][rows][sid, ent], s["used"][rows][sid, ent]
        nb = newb[sid]                                                         # (entries, B)
        width = self.n_bits + 1
        nk = np.zeros_like(keys)
        for j in range(L):
            nib = ((keys >> np.uint32(width * j)) & np.uint32((1 << width) - 1)).astype(np.intp)
            mapped = np.take_along_axis(nb, np.maximum(nib - 1, 0)[:, None], axis=1)[:, 0].astype(np.uint32)
            nk |= np.where(nib > 0, mapped + np.uint32(1), np.uint32(0)) << np.uint32(width * j)
        # a predicted old bucket predicts every new bucket it overlaps (its values may fall in either)
        span1 = np.where(hi1 > lo1, hi1 - lo1, 1.0)
        upper = lo0[:, None] + np.arange(1, B + 1) / B * (hi0 - lo0)[:, None]
        last = np.ceil((upper - lo1[:, None]) / span1[:, None] * B).astype(np.intp) - 1
        lower = self._bucket(upper - (hi0 - lo0)[:, None] / B, lo1[:, None], hi1[:, None])
        # only when the range grew by a bucket or more: a smaller growth (noise at an extreme) moves
        # the boundaries a little, and or-ing neighbours every time would blur the masks for good
        grown = ((hi0 > lo0) & ((hi1 - lo1) >= (hi0 - lo0) * (1.0 + 1.0 / B)))[:, None]
        first_b = np.where(grown, np.minimum(lower, newb), newb)
        last = np.where(grown, np.clip(last, newb, B - 1), newb)
        cover = ((np.int64(1) << (last + 1)) - (np.int64(1) << first_b)).astype(np.uint16)[sid]   # (entries, B)
        nm = np.zeros_like(masks)
        for j in range(B):
            nm |= np.where((masks >> np.uint16(j)) & np.uint16(1), cover[:, j], np.uint16(0)).astype(np.uint16)
        order = np.lexsort((nk, sid))
        sid, nk, nm, nu = sid[order], nk[order], nm[order], nu[order]
        start = np.flatnonzero(np.r_[True, (sid[1:] != sid[:-1]) | (nk[1:] != nk[:-1])]) if sid.size else np.zeros(0, int)
        if sid.size:
            sid, nk = sid[start], nk[start]
            nm = np.bitwise_or.reduceat(nm, start)
            nu = np.maximum.reduceat(nu, start)
        st = self._slots(nk) // W
        order = np.lexsort((-nu.astype(np.int64), st, sid))
        sid, nk, nm, nu, st = sid[order], nk[order], nm[order], nu[order], st[order]
        first = np.r_[True, (sid[1:] != sid[:-1]) | (st[1:] != st[:-1])] if sid.size else np.zeros(0, bool)
        rank = np.arange(sid.size) - np.maximum.accumulate(np.where(first, np.arange(sid.size), 0))
        ok = rank < W
        at = st[ok] * W + rank[ok]
        for name, val in (("keys", nk), ("masks", nm), ("used", nu)):
            table = np.zeros((m, size), dtype=s[name].dtype)
            table[sid[ok], at] = val[ok]
            s[name][rows] = table

    def _learn_contexts(self, rows, keys, way, base, potential, bit, ok):
        """Add this point's right bucket to orders 1..potential (insert unknown ones, LRU)."""
        s = self.s
        s["tick"][:] = np.where(ok, s["tick"] + np.uint32(1), s["tick"])
        tick = s["tick"]
        for k in range(self.max_left):
            live = ok & (potential > k)
            if not live.any():
                break
            r = rows[live]
            kk, bs = keys[live, k], base[live, k]
            w = way[live, k]
            if k:  # an insert at a lower order may have evicted or moved this set's entries
                w, bs = self._find(r, kk)
            idx = bs[:, None] + np.arange(self.n_ways)
            victim = bs + np.argmin(s["used"][r[:, None], idx], axis=1)
            at = np.where(w >= 0, bs + np.maximum(w, 0), victim)
            old = np.where(w >= 0, s["masks"][r, at], np.uint16(0))
            s["keys"][r, at] = kk
            s["masks"][r, at] = old | bit[live]
            s["used"][r, at] = tick[live]

    # -- one-point path (river style) ---------------------------------------
    def update(self, x: float, t) -> DetectorResult:
        """Score ``x`` (using only data before ``t``), then learn it."""
        self._check_one()
        score, z, expected, fired = self.update_many([x], t)
        return DetectorResult(float(score[0]), float(z[0]), float(expected[0]), bool(fired[0]))

    def score_one(self, x: float, t) -> float:
        """Score ``x`` without learning from it."""
        self._check_one()
        saved = {k: v.copy() for k, v in self.s.items()}
        score = self.update_many([x], t)[0]
        self.s = saved
        return float(score[0])

    def learn_one(self, x: float, t) -> "ContextNoveltyDetector":
        """Learn from ``x`` at time ``t``."""
        self._check_one()
        self.update_many([x], t)
        return self


def _popcount16(m):
    """Number of set bits of uint16 values."""
    m = m.astype(np.uint32)
    m = m - ((m >> 1) & 0x5555)
    m = (m & 0x3333) + ((m >> 2) & 0x3333)
    m = (m + (m >> 4)) & 0x0F0F
    return ((m + (m >> 8)) & 0x1F).astype(np.int64)
