"""Python's cyclic garbage collector paused while a large structure is built or written, synchronously.

Reading a large request allocates an object per JSON value and per model, and writing one an object per
value again; the collections that allocation sets off walked them, and once enough were promoted, every
object of the process (a full collection: 0.5-0.8 s in the middle of an agent's large request on a gateway,
bench/loop_lag.py). Neither reading nor writing makes garbage cycles: what dies is freed by its reference
count. With `promote`, what was allocated meanwhile and lives on goes to the oldest generation at once
(`gc.freeze()` then `gc.unfreeze()`): the young collections after it do not walk it, and it does not count
towards the next full one (which walks it, as every long-lived object).

Paused already (by a caller, or by another thread's pause: it is one switch for the whole process): left
as it is, and the first pause resumes it when it ends, so it is never paused longer than one pause."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused(*, promote: bool = False) -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if promote:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
