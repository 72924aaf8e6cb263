"""The offline quality scores on hand-made cases."""

import numpy as np
import pytest

from raydl.gen.metrics import class_coverage, classifier_score, frechet_distance


def test_classifier_score_limits() -> None:
    one_class = np.tile([0.9, 0.05, 0.05], (100, 1))
    assert classifier_score(one_class) == pytest.approx(1.0)  # no diversity
    confident = np.eye(10)[np.arange(1000) % 10]  # sure, and spread over all 10 classes
    assert classifier_score(confident) == pytest.approx(10.0, rel=1e-6)
    unsure = np.full((50, 10), 0.1)
    assert classifier_score(unsure) == pytest.approx(1.0)
    # two equally used classes, each predicted with probability 0.9
    half = np.array([[0.9, 0.1], [0.1, 0.9]] * 50)
    kl = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert classifier_score(half) == pytest.approx(np.exp(kl))


def test_frechet_distance_by_hand() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)  # identical sets
    # a pure shift moves only the mean term: distance = |shift|^2
    assert frechet_distance(x, x + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-6)
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2
    a = np.array([[-1.0], [1.0]] * 500)  # mean 0, sample std ~1
    b = 3.0 + 2.0 * a  # mean 3, std ~2
    s = np.std(a, ddof=1)
    assert frechet_distance(a, b) == pytest.approx(9.0 + (s - 2 * s) ** 2, rel=1e-6)
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(x, x[:, :2])


def test_class_coverage() -> None:
    probs = np.eye(10)[[0, 1, 1, 2, 2, 2]]
    assert class_coverage(probs) == pytest.approx(0.3)
    assert class_coverage(probs, min_share=0.2) == pytest.approx(0.2)  # class 0 is 1/6 < 0.2
    assert class_coverage(np.eye(10)) == 1.0
