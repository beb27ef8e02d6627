"""The classic tier: alt-profanity-check's TF-IDF + calibrated linear model, shipped inside its PyPI
package (no download). About 3 ms a text; strong on profanity, weak on veiled hostility."""

from __future__ import annotations


def classic_predict(texts: list[str]) -> list[float]:
    from profanity_check import predict_prob  # imported on first use: it loads its model at import

    return [float(p) for p in predict_prob(texts)]
