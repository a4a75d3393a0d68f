"""`switchyard up`: the whole platform on embedded defaults (what `make run` calls)."""

from __future__ import annotations

import argparse

from switchyard.cli.devstack import StackSettings, run


def _up(_args: argparse.Namespace) -> int:
    return run(StackSettings())


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = sub.add_parser("up", help="run nats-server, the database and all six services on this machine")
    up.set_defaults(func=_up)
