"""The Calorimeter Pyramid's discrete <-> continuous maps: Gumbel dequantization, top-k quantization, count CDFs.

Hit patterns are binary and hit counts are integers; the Pyramid's flows model continuous values. Three maps
(Schnake et al., "The Calorimeter Pyramid: rethinking the design of generative calorimeter shower models"; the
Gumbel top-k trick of Kool, van Hoof and Welling, "Stochastic Beams and Where to Find Them", arXiv:1903.06059):

* :func:`gumbel_dequantize`: every hit subcell carries a Gumbel(0, 1) draw, every non-hit subcell a Gumbel(-7, 1)
  draw (a non-hit subcell then has about a 1e-3 chance of outranking a hit one), affinely normalized
  (:data:`GUMBEL_CENTER`, :data:`GUMBEL_SCALE`) so that the values sit well inside the splines' domain.
* :func:`top_k_mask`: the quantization: the ``k`` largest values of a row are its hit subcells. Ranks come from
  a sort, so the ``k`` subcells are distinct by construction: a generated shower never has a double hit.
* :class:`CountCDF`: the CDF dequantization of a count ``k`` in ``[k_min, k_max]``: with the empirical CDF F
  (smoothed by a pseudo-count, so every count in the range keeps a positive probability),
  ``v = F(k - 1) + u (F(k) - F(k - 1))``, u uniform, mapped to ``Phi^-1(v)`` (a standard-normal-like value); the
  inverse ``k = min{j : F(j) >= Phi(z)}`` turns any real z back into a count of the range.

Shapes are documented per function; all functions are TensorFlow ops that run in graph mode. See
``docs/pyramid.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = [
    "GUMBEL_CENTER",
    "GUMBEL_NON_HIT_LOCATION",
    "GUMBEL_SCALE",
    "CountCDF",
    "gumbel_dequantize",
    "top_k_mask",
]

#: Location of the Gumbel draws of non-hit subcells (hit subcells: 0); the scale is 1 for both.
GUMBEL_NON_HIT_LOCATION = -7.0
#: The normalized value is (g - GUMBEL_CENTER) / GUMBEL_SCALE: hit subcells near +1.2, non-hit ones near -0.8.
GUMBEL_CENTER = -3.5
GUMBEL_SCALE = 3.5
#: Open interval of the uniform draws and CDF values, so that logs and Phi^-1 stay finite in float32.
_EPS = 1e-6


def gumbel_dequantize(hits: Any, seed: Any, uniform: Any = None) -> tf.Tensor:
    """Normalized Gumbel values (..., n) float32 for a boolean hit pattern (..., n), with a stateless seed (2,).

    Hit entries draw Gumbel(0, 1), the others Gumbel(-7, 1); the result is ``(g - GUMBEL_CENTER) / GUMBEL_SCALE``.
    ``uniform`` (..., n) in (0, 1): fixed uniform numbers of the Gumbel draws (clipped to the open interval)
    instead of the seed's.
    """
    hits = tf.cast(hits, tf.bool)
    if uniform is None:
        u = tf.random.stateless_uniform(tf.shape(hits), seed, minval=_EPS, maxval=1.0 - _EPS, dtype=tf.float32)
    else:
        u = tf.clip_by_value(tf.reshape(tf.cast(uniform, tf.float32), tf.shape(hits)), _EPS, 1.0 - _EPS)
    gumbel = -tf.math.log(-tf.math.log(u))
    location = tf.where(hits, 0.0, GUMBEL_NON_HIT_LOCATION)
    return (gumbel + location - GUMBEL_CENTER) / GUMBEL_SCALE


def top_k_mask(values: Any, k: Any) -> tf.Tensor:
    """The hit pattern (..., n) bool of the ``k`` (...) largest entries of each row of ``values`` (..., n).

    Ties are broken by position (stable sort), so exactly ``min(k, n)`` distinct entries are True per row.
    """
    values = tf.convert_to_tensor(values)
    order = tf.argsort(values, axis=-1, direction="DESCENDING", stable=True)
    ranks = tf.argsort(order, axis=-1, stable=True)
    return ranks < tf.cast(k, ranks.dtype)[..., None]


@dataclass(frozen=True)
class CountCDF:
    """The smoothed empirical distribution of a count ``k`` in ``[k_min, k_max]``: ``probabilities[j]`` of
    ``k = k_min + j`` (positive, summing to 1)."""

    k_min: int
    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        p = np.asarray(self.probabilities, dtype=np.float64)
        if p.ndim != 1 or p.size < 1 or not np.all(np.isfinite(p)) or np.any(p <= 0):
            raise ValueError(f"CountCDF: probabilities must be positive and finite, got {self.probabilities}")
        if abs(p.sum() - 1.0) > 1e-6:
            raise ValueError(f"CountCDF: probabilities sum to {p.sum()}, not 1")

    @property
    def k_max(self) -> int:
        """The largest count of the range."""
        return self.k_min + len(self.probabilities) - 1

    @classmethod
    def from_counts(cls, counts: Any, k_min: int, k_max: int, pseudo_count: float = 0.5) -> CountCDF:
        """The distribution of the observed ``counts`` (any shape of ints in ``[k_min, k_max]``), each count of the
        range given ``pseudo_count`` extra observations (so none has probability 0)."""
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        if counts.size and (counts.min() < k_min or counts.max() > k_max):
            raise ValueError(f"CountCDF: counts outside [{k_min}, {k_max}]: {counts.min()}..{counts.max()}")
        histogram = np.bincount(counts - k_min, minlength=k_max - k_min + 1).astype(np.float64) + pseudo_count
        probabilities = histogram / histogram.sum()
        probabilities = probabilities / probabilities.sum()
        return cls(int(k_min), tuple(float(p) for p in probabilities))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {"k_min": self.k_min, "probabilities": list(self.probabilities)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CountCDF:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["k_min"]), tuple(float(p) for p in data["probabilities"]))

    def _upper_edges(self) -> np.ndarray:
        edges = np.cumsum(np.asarray(self.probabilities, dtype=np.float64))
        edges[-1] = 1.0
        return edges

    def dequantize(self, k: Any, seed: Any, uniform: Any = None) -> tf.Tensor:
        """Continuous values (...) float32 of counts ``k`` (...) (clipped to the range), stateless seed (2,);
        ``uniform`` (...) in [0, 1): fixed uniform numbers instead of the seed's."""
        edges = tf.constant(np.concatenate([[0.0], self._upper_edges()]), tf.float64)
        index = tf.clip_by_value(tf.cast(k, tf.int32) - self.k_min, 0, len(self.probabilities) - 1)
        low, high = tf.gather(edges, index), tf.gather(edges, index + 1)
        if uniform is None:
            u = tf.random.stateless_uniform(tf.shape(index), seed, dtype=tf.float64)
        else:
            u = tf.reshape(tf.cast(uniform, tf.float64), tf.shape(index))
        v = tf.clip_by_value(low + u * (high - low), _EPS, 1.0 - _EPS)
        return tf.cast(tf.math.ndtri(v), tf.float32)

    def quantize(self, z: Any) -> tf.Tensor:
        """Counts (...) int32 in ``[k_min, k_max]`` of continuous values ``z`` (...): the inverse of
        :meth:`dequantize` (non-finite values give ``k_max`` for +inf and NaN, ``k_min`` for -inf)."""
        v = _normal_cdf(z)
        v = tf.where(tf.math.is_nan(v), tf.ones_like(v), v)
        upper = tf.constant(self._upper_edges(), tf.float64)
        index = tf.searchsorted(upper, tf.reshape(tf.cast(v, tf.float64), [-1]), side="left")
        index = tf.reshape(tf.clip_by_value(index, 0, len(self.probabilities) - 1), tf.shape(v))
        return tf.cast(index, tf.int32) + self.k_min


def _normal_cdf(z: Any) -> tf.Tensor:
    """Phi(z) in float64."""
    z = tf.cast(z, tf.float64)
    return 0.5 * tf.math.erfc(-z / np.sqrt(2.0))
