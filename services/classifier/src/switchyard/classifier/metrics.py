from __future__ import annotations

from prometheus_client import Counter

PREDICTIONS = Counter(
    "switchyard_classifier_predictions_total",
    "Classified tasks by where the prediction came from: the encoder, or an earlier identical prompt",
    ["source"],
)
