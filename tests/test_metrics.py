"""Table 1 metrics: hand-made cases, and the vectorised path against scipy / nltk."""

import math
import warnings

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from scipy.spatial import distance

from pxby_lib.metrics import (
    bleu_batch,
    bleu_nltk,
    chunk_metrics,
    cosine_batch,
    cosine_similarity,
    hamming_batch,
    mean_std,
    window_metrics,
)


def test_identical_chunk_is_perfect():
    rng = np.random.default_rng(0)
    w = rng.integers(0, 113, (16, 3, 3)).astype(np.uint8)
    assert window_metrics(w, w.copy()) == (0.0, 1.0, 1.0)
    df = chunk_metrics(w[None], w[None].copy())
    assert list(df.columns) == ["hamming", "cosine", "bleu"]
    assert df.iloc[0].tolist() == pytest.approx([0.0, 1.0, 1.0], abs=1e-12)


def test_hand_computed_hamming_and_cosine():
    gen, true = np.array([1, 2, 3, 0]), np.array([1, 2, 0, 0])
    hamming, cosine, _ = window_metrics(gen, true)
    assert hamming == 0.25  # one of four ids differs
    assert cosine == pytest.approx(5 / math.sqrt(14 * 5))  # (1+4) / (|1,2,3| |1,2|)
    df = chunk_metrics(gen[None], true[None])
    assert df["hamming"][0] == 0.25
    assert df["cosine"][0] == pytest.approx(5 / math.sqrt(70))


def test_bleu_is_zero_without_smoothing():
    ref = np.arange(9)
    hyp = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7])  # every unigram matches, no bigram does
    assert bleu_nltk(hyp, ref) < 1e-70  # nltk: zero bigram precision -> float min -> ~0
    assert bleu_batch(hyp[None], ref[None])[0] < 1e-70
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smoothed = sentence_bleu([list(map(str, ref))], list(map(str, hyp)),
                                 smoothing_function=SmoothingFunction().method1)
    assert smoothed > 0.01  # the zero comes from the missing smoothing, not from the inputs
    disjoint = ref + 20  # no unigram matches: exactly 0
    assert bleu_nltk(disjoint, ref) == 0.0 and bleu_batch(disjoint[None], ref[None])[0] == 0.0


def test_bleu_silences_nltk_warnings():
    ref, hyp = np.arange(9), np.array([0, 2, 4, 6, 8, 1, 3, 5, 7])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning leaking out would raise here
        bleu_nltk(hyp, ref)
        window_metrics(hyp, ref)


def test_zero_vector_cosine_rule():
    z, v = np.zeros(144, np.uint8), np.arange(144) % 7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(distance.cosine(z, z))  # what the rule replaces
    assert cosine_similarity(z, z) == 1.0
    assert cosine_similarity(z, v) == 0.0 and cosine_similarity(v, z) == 0.0
    got = cosine_batch(np.stack([z, z, v]), np.stack([z, v, z]))
    assert got.tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("n_ids", [3, 113])
def test_vectorised_metrics_match_scipy_and_nltk(n_ids):
    rng = np.random.default_rng(n_ids)
    true = rng.integers(0, n_ids, (60, 144))
    gen = true.copy()
    noise = rng.random(true.shape) < rng.random((60, 1))  # 0..100 % of ids changed per row
    gen[noise] = rng.integers(0, n_ids, noise.sum())
    df = chunk_metrics(gen.reshape(60, 16, 3, 3), true.reshape(60, 16, 3, 3))
    ref_h = [distance.hamming(g, t) for g, t in zip(gen, true)]
    ref_c = [1 - distance.cosine(g, t) for g, t in zip(gen, true)]
    ref_b = [bleu_nltk(g, t) for g, t in zip(gen, true)]
    np.testing.assert_allclose(df["hamming"], ref_h, rtol=0, atol=1e-15)
    np.testing.assert_allclose(df["cosine"], ref_c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(df["bleu"], ref_b, rtol=1e-10, atol=0)
    assert 0 < np.mean(ref_b) < 1  # the random cases are neither all perfect nor all zero


@pytest.mark.parametrize("length", [0, 1, 3, 4, 7])
def test_bleu_batch_short_sequences_match_nltk(length):
    rng = np.random.default_rng(length)
    true = rng.integers(0, 4, (40, length))
    gen = np.where(rng.random(true.shape) < 0.3, rng.integers(0, 4, true.shape), true)
    np.testing.assert_allclose(bleu_batch(gen, true),
                               [bleu_nltk(g, t) for g, t in zip(gen, true)], rtol=1e-10, atol=0)


def test_hamming_batch_and_shape_errors():
    assert hamming_batch(np.array([[1, 2, 3, 4]]), np.array([[1, 0, 0, 4]])).tolist() == [0.5]
    with pytest.raises(ValueError, match="same shape"):
        chunk_metrics(np.zeros((2, 16, 3, 3)), np.zeros((2, 15, 3, 3)))


def test_mean_std_is_sample_std():
    mean, std = mean_std(np.array([1.0, 2.0, 3.0, np.nan]))
    assert mean == 2.0 and std == 1.0  # ddof=1, nan ignored
    assert math.isnan(mean_std(np.array([5.0]))[1])
