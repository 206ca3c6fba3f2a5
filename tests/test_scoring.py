"""Scoring a multiclass model on labels it never learnt (a class that returns after a window without it)."""

from __future__ import annotations

import numpy as np
import pytest

from retrainlib import automl


def test_a_multiclass_label_the_model_never_learnt_counts_as_wrong_instead_of_failing():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])  # classes rain, sun
    y = ["rain", "sun", "drizzle", "rain"]
    assert automl.score("accuracy", "multiclass", y, proba, classes=["rain", "sun"]) == pytest.approx(0.75)
    loss = automl.score("log_loss", "multiclass", y, proba, classes=["rain", "sun"])
    assert np.isfinite(loss) and loss > automl.score("log_loss", "multiclass", ["rain", "sun", "rain", "rain"], proba,
                                                      classes=["rain", "sun"])


def test_the_validation_bootstrap_scores_a_label_the_model_never_learnt_as_wrong():
    from retrainlib.validation import bootstrap_scores

    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    y = ["rain", "sun", "drizzle", "rain"]
    acc = bootstrap_scores("accuracy", "multiclass", y, [proba], classes=["rain", "sun"], samples=50)
    assert acc.shape[-1] == 50 and np.all(acc <= 1.0) and np.mean(acc) < 1.0
    loss = bootstrap_scores("log_loss", "multiclass", y, [proba], classes=["rain", "sun"], samples=50)
    assert np.all(np.isfinite(loss))
