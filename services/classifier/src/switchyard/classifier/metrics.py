from __future__ import annotations

from prometheus_client import Counter

PREDICTIONS = Counter(
    "switchyard_classifier_predictions_total",
    "Classified tasks by where the prediction came from: the encoder, an earlier identical prompt, or "
    "none (passthrough: an embedding task, not classified)",
    ["source"],
)
