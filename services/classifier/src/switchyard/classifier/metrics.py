from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from switchyard.common.metrics import zero

PREDICTIONS = Counter(
    "switchyard_classifier_predictions_total",
    "Classified tasks by where the prediction came from: the encoder, an earlier identical prompt, or "
    "passthrough (an embedding task, not classified)",
    ["source"],
)
HEADS = Gauge(
    "switchyard_classifier_heads_info",
    "The model version this replica classifies with (1 for the one in use)",
    ["model_version"],
)
HEADS_SWAPS = Counter(
    "switchyard_classifier_heads_swaps_total",
    "Promoted heads this replica loaded, checked and swapped in without a restart",
)
HEADS_REFUSED = Counter(
    "switchyard_classifier_heads_refused_total",
    "Promoted heads this replica refused, keeping the heads it had: corrupt (a file missing or not its "
    "sha256, a label map, shape or features version the code cannot read), incompatible (trained on "
    "another encoder or input size) or unreadable (the pointer itself)",
    ["reason"],
)
HEADS_SWAP_DELAY = Histogram(
    "switchyard_classifier_heads_swap_delay_seconds",
    "From a promotion (the pointer's time) to this replica classifying with the promoted heads",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)

SOURCES = ("encoder", "reused", "passthrough")
REFUSALS = ("corrupt", "incompatible", "unreadable", "forged")


def at_start() -> None:
    """The counters' label values known at start, at 0 (switchyard.common.metrics: `zero`)."""
    zero(PREDICTIONS, [(source,) for source in SOURCES])
    zero(HEADS_REFUSED, [(reason,) for reason in REFUSALS])
