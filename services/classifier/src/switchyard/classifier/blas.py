"""The heads' numpy products on one OpenBLAS thread.

The heads multiply a few rows at a time: OpenBLAS's second thread only adds wake-ups and spinning that take
a core from ONNX Runtime (the service's per-request CPU of the heads halves with one thread; `switchyard
classifier predict` on pool prompts: 14.2 -> 10.4 CPU-ms a prompt, the same wall time). Call before numpy
loads; an operator's own setting wins. Training, whose products are large, keeps OpenBLAS's default.
"""

from __future__ import annotations

import os


def one_blas_thread() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
