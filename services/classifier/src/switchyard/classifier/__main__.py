import os

# The heads multiply one row at a time: OpenBLAS's worker threads only add wake-ups and spinning that take
# a core from ONNX Runtime (measured: per-request CPU of the heads halves with one thread). Set before
# numpy loads OpenBLAS; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from switchyard.classifier.app import main

main()
