"""Table 1 metrics (spec section 11): Hamming, Cosine and BLEU between generated and true windows.

One evaluation chunk compares 16 generated windows with the 16 true ones, flattened to
144 ids, padding zeros included (a flaw of the published protocol, kept on purpose).
`window_metrics` is the reference path (scipy + nltk, one chunk); `chunk_metrics` computes
the same numbers for many chunks at once with numpy (tests check them against the reference).
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pandas as pd
from nltk.translate.bleu_score import sentence_bleu
from scipy.spatial import distance

BLEU_WEIGHTS = (0.25, 0.25, 0.25, 0.25)  # nltk's default: up to 4-grams
_CODE_BASE = 256  # ids are < 113, so a 4-gram fits in 32 bits and the chunk index above it


def _flat_pairs(generated: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gen, ref = np.asarray(generated), np.asarray(true)
    if gen.shape != ref.shape:
        raise ValueError(f"generated {gen.shape} and true {ref.shape} must have the same shape")
    return gen, ref


def cosine_similarity(u: np.ndarray, v: np.ndarray) -> float:
    """1 - scipy's cosine distance on raw ids, defined where scipy gives nan.

    Zero-vector rule (scipy returns nan with a RuntimeWarning there): two all-zero
    vectors are identical, similarity 1.0; one all-zero vector against a non-zero one
    shares no direction, similarity 0.0.
    """
    u, v = np.asarray(u, dtype=np.float64).ravel(), np.asarray(v, dtype=np.float64).ravel()
    u_zero, v_zero = not u.any(), not v.any()
    if u_zero or v_zero:
        return 1.0 if (u_zero and v_zero) else 0.0
    return 1.0 - float(distance.cosine(u, v))


def bleu_nltk(hypothesis: np.ndarray, reference: np.ndarray) -> float:
    """nltk sentence_bleu([ref], hyp), ids as string tokens, default weights, no smoothing."""
    hyp = [str(int(i)) for i in np.asarray(hypothesis).ravel()]
    ref = [str(int(i)) for i in np.asarray(reference).ravel()]
    with warnings.catch_warnings():  # nltk warns on every zero n-gram count: expected here
        warnings.simplefilter("ignore")
        return float(sentence_bleu([ref], hyp))


def window_metrics(generated: np.ndarray, true: np.ndarray) -> tuple[float, float, float]:
    """(hamming, cosine, bleu) of ONE chunk: (n, 3, 3) windows or any flat id array."""
    gen, ref = _flat_pairs(generated, true)
    gen, ref = gen.ravel().astype(np.int64), ref.ravel().astype(np.int64)
    hamming = float(distance.hamming(gen, ref))
    return hamming, cosine_similarity(gen, ref), bleu_nltk(gen, ref)


def hamming_batch(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Fraction of differing ids per row: (C, N) -> (C,)."""
    return (gen != ref).mean(axis=1)


def cosine_batch(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Cosine similarity per row with the zero-vector rule of `cosine_similarity`: (C, N) -> (C,)."""
    u, v = gen.astype(np.float64), ref.astype(np.float64)
    uu, vv, uv = (u * u).sum(1), (v * v).sum(1), (u * v).sum(1)  # (C,)
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = np.clip(uv / np.sqrt(uu * vv), -1.0, 1.0)
    u_zero, v_zero = uu == 0, vv == 0
    sim = np.where(u_zero & v_zero, 1.0, sim)
    return np.where(u_zero ^ v_zero, 0.0, sim)


def _ngram_keys(ids: np.ndarray, n: int) -> np.ndarray:
    """Every n-gram of every row as one int64 key (row index in the high bits): (C, N) -> (C*(N-n+1),)."""
    C, N = ids.shape
    code = np.zeros((C, N - n + 1), dtype=np.int64)
    for j in range(n):
        code = code * _CODE_BASE + ids[:, j : N - n + 1 + j]
    rows = np.arange(C, dtype=np.int64)[:, None] * _CODE_BASE**n
    return (rows + code).ravel()


def bleu_batch(hyp: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """nltk's unsmoothed sentence BLEU (default weights) per row, vectorised: (C, N) -> (C,).

    Same formula as nltk: clipped n-gram precisions; BLEU is 0 when no unigram matches;
    a zero higher-order precision becomes sys.float_info.min (so BLEU ~1e-77, as nltk);
    hypothesis and reference have equal length, so the brevity penalty is 1 (0 if empty).
    """
    hyp, ref = hyp.astype(np.int64), ref.astype(np.int64)
    if hyp.size and (hyp.min() < 0 or max(hyp.max(), ref.max()) >= _CODE_BASE):
        raise ValueError(f"bleu_batch needs ids in [0, {_CODE_BASE}); got {hyp.min()}..{hyp.max()}")
    C, N = hyp.shape
    if C == 0:
        return np.zeros(0)
    log_p = np.zeros(C)
    unigram_hits = np.zeros(C)
    for n, weight in enumerate(BLEU_WEIGHTS, start=1):
        numerator = np.zeros(C)
        if N >= n:
            uniq_h, count_h = np.unique(_ngram_keys(hyp, n), return_counts=True)
            uniq_r, count_r = np.unique(_ngram_keys(ref, n), return_counts=True)
            at = np.clip(np.searchsorted(uniq_r, uniq_h), 0, len(uniq_r) - 1)
            found = uniq_r[at] == uniq_h
            clipped = np.where(found, np.minimum(count_h, count_r[at]), 0)
            numerator = np.bincount(uniq_h // _CODE_BASE**n, weights=clipped, minlength=C)
        denominator = max(1, N - n + 1)
        p = np.where(numerator > 0, numerator / denominator, sys.float_info.min)
        log_p += weight * np.log(p)
        if n == 1:
            unigram_hits = numerator
    brevity = 0.0 if N == 0 else 1.0
    return np.where(unigram_hits > 0, brevity * np.exp(log_p), 0.0)


def chunk_metrics(generated: np.ndarray, true: np.ndarray) -> pd.DataFrame:
    """Metrics of many chunks at once: (C, n, 3, 3) or (C, N) -> DataFrame[hamming, cosine, bleu]."""
    gen, ref = _flat_pairs(generated, true)
    if gen.ndim < 2:
        raise ValueError(f"chunk_metrics expects (C, ...) arrays, got shape {gen.shape}")
    gen, ref = gen.reshape(len(gen), -1), ref.reshape(len(ref), -1)  # (C, N)
    return pd.DataFrame(
        {
            "hamming": hamming_batch(gen, ref),
            "cosine": cosine_batch(gen, ref),
            "bleu": bleu_batch(gen, ref),
        }
    )


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample std (ddof=1) ignoring nan; nan where undefined (fewer than 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    mean = float(v.mean()) if len(v) else math.nan
    std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
    return mean, std
