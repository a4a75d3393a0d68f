"""The `switchyard` command: one entry point, one module per sub-command group.

Each module in COMMANDS has `register(subparsers)`, which adds its parser(s) with `func` set to a
callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from switchyard.cli.errors import CommandError
from switchyard.cli.failures import user_problem
from switchyard.common.config import settings_problem

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
    for group in sub.choices.values():
        _group_options_after_the_action(group)
    return parser


def _group_options_after_the_action(group: argparse.ArgumentParser) -> None:
    """A group's own options (`keys --url`, `billing --database-url`, `dlq --nats-url`) are taken after its
    action too (`switchyard keys list --url U`), as the README writes them. The copies have no default, so
    one given before the action is kept unless it is given again after it (the later one holds)."""
    own = [a for a in group._actions if isinstance(a, argparse._StoreAction) and a.option_strings]
    for actions in (a for a in group._actions if isinstance(a, argparse._SubParsersAction)):
        for action in actions.choices.values():
            for option in own:
                if any(s in action._option_string_actions for s in option.option_strings):
                    continue
                action.add_argument(
                    *option.option_strings,
                    dest=option.dest,
                    type=option.type,
                    choices=option.choices,
                    metavar=option.metavar,
                    help=option.help,
                    default=argparse.SUPPRESS,
                )


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
    except CommandError as exc:
        print(f"switchyard {args.command}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # a command's `SystemExit("why")`: its line names the command too (exit 1)
        if not isinstance(exc.code, str):
            raise
        said = exc.code.removeprefix("switchyard: ")
        print(f"switchyard {args.command}: {said}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `switchyard ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit fails too
        return 1
    except Exception as exc:
        problem_and_code = user_problem(exc)
        if problem_and_code is None:  # a bug, with its traceback
            raise
        said, code = problem_and_code
        print(f"switchyard {args.command}: {said}", file=sys.stderr)
        return code
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
