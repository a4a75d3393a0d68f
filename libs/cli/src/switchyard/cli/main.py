"""The `switchyard` command: one entry point, one module per sub-command group.

Each module in COMMANDS has `register(subparsers)`, which adds its parser(s) with `func` set to a
callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from switchyard.common.config import settings_problem
from switchyard.common.errors import ConfigurationError

# A file the command was given (or its settings name) that is not there or not readable: the user's to fix.
FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)

COMMANDS = (
    "switchyard.cli.up_cmd",
    "switchyard.cli.db_cmd",
    "switchyard.cli.asyncapi_cmd",
    "switchyard.cli.ledger_cmd",
    "switchyard.cli.siem_cmd",
    "switchyard.cli.models_cmd",
    "switchyard.cli.classifier_cmd",
    "switchyard.cli.route_cmd",
    "switchyard.cli.router_cmd",
    "switchyard.cli.dlq_cmd",
    "switchyard.cli.bus_cmd",
    "switchyard.cli.billing_cmd",
    "switchyard.cli.keys_cmd",
    "switchyard.cli.org_cmd",
    "switchyard.cli.guardrails_cmd",
    "switchyard.cli.tenants_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description="Switchyard: route LLM work, prove it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (ValidationError, SettingsError) as exc:
        problem = settings_problem(exc)
        if problem is None:  # not the environment's: a bug, with its traceback
            raise
        print(f"switchyard: {problem}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:  # a missing or invalid policy, classifier artifact, model file ...
        print(f"switchyard {args.command}: {exc}", file=sys.stderr)
        return 2
    except FILE_ERRORS as exc:
        if exc.filename is None:  # not a path the user gave: a bug, with its traceback
            raise
        print(f"switchyard {args.command}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
