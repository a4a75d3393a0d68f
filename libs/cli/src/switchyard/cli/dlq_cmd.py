"""`switchyard dlq list|show|replay`: what the services rejected, why, and sending it back once fixed.

Listings never print message bodies (a task carries its prompt); `show --body` does, on purpose.
"""

from __future__ import annotations

import argparse
import sys

import orjson
from nats.js import JetStreamContext

from switchyard.cli.bus import on_bus
from switchyard.common import dlq


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("dlq", help="inspect and replay the dead-letter stream")
    parser.add_argument(
        "--nats-url",
        help="default: SWITCHYARD_NATS_URL, else `switchyard up`'s "
        "(nats://127.0.0.1:SWITCHYARD_NATS_PORT, 4222)",
    )
    cmds = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = cmds.add_parser("list", help="dead letters with their reasons, oldest first")
    listing.add_argument("--service", help="only those this service rejected")
    listing.add_argument("--from-seq", type=int, default=1, help="start at this DLQ sequence")
    listing.add_argument(
        "--limit",
        type=_at_least_one,
        default=100,
        help="at most this many (default 100); stderr says where more begin",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)

    show = cmds.add_parser("show", help="one dead letter's headers (and body with --body)")
    show.add_argument("seq", type=int)
    show.add_argument("--body", action="store_true", help="also print the original bytes (may hold a prompt)")
    show.set_defaults(func=_show)

    again = cmds.add_parser("replay", help="publish dead letters again on their original subjects")
    again.add_argument("seqs", type=int, nargs="*", metavar="SEQ")
    again.add_argument("--all", action="store_true", help="every dead letter (of --service, if given)")
    again.add_argument("--service", help="with --all: only those this service rejected")
    again.add_argument("--keep", action="store_true", help="keep the dead letters after replaying them")
    again.add_argument(
        "--unchecked",
        action="store_true",
        help="also a dead letter whose event the events stream no longer holds (or holds otherwise)",
    )
    again.set_defaults(func=_replay)


def _at_least_one(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {number}")
    return number


def _list(args: argparse.Namespace) -> int:
    async def work(js: JetStreamContext) -> list[dlq.DeadLetter]:
        return [  # one more than shown: whether the listing was cut
            letter
            async for letter in dlq.scan(
                js, service=args.service, start_seq=args.from_seq, limit=args.limit + 1
            )
        ]

    letters = on_bus(args.nats_url, work)
    if len(letters) > args.limit:
        rest = letters.pop().seq
        print(f"(more dead letters from sequence {rest} (--from-seq {rest}))", file=sys.stderr)
    if args.json:
        for letter in letters:
            sys.stdout.write(orjson.dumps(letter.summary()).decode() + "\n")
        return 0
    if not letters:
        print("no dead letters")
        return 0
    print(f"{'SEQ':>6}  {'SERVICE':<10}  {'CODE':<18}  {'SUBJECT':<32}  REASON")
    for letter in letters:
        print(
            f"{letter.seq:>6}  {letter.service:<10}  {letter.code:<18}  {letter.original_subject:<32}  "
            f"{letter.reason}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        letter = on_bus(args.nats_url, lambda js: dlq.get(js, args.seq))
    except dlq.DeadLetterNotFound as exc:
        print(f"switchyard dlq: {exc}", file=sys.stderr)
        return 1
    doc: dict[str, object] = {**letter.summary(), "headers": letter.headers}
    if args.body:
        doc["body"] = letter.data.decode("utf-8", errors="backslashreplace")
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _replay(args: argparse.Namespace) -> int:
    if bool(args.seqs) == bool(args.all):
        print("switchyard dlq: give dead-letter sequences, or --all", file=sys.stderr)
        return 2

    async def work(js: JetStreamContext) -> int:
        letters = [letter async for letter in dlq.scan(js)]  # to find each one's twins (other services)
        seqs = args.seqs or [x.seq for x in letters if args.service is None or x.service == args.service]
        failed = 0
        done: set[int] = set()
        for seq in seqs:
            if seq in done:
                continue
            try:
                replayed = await dlq.replay(
                    js, seq, keep=args.keep, letters=letters, unchecked=args.unchecked
                )
            except dlq.DeadLetterNotFound as exc:
                print(f"switchyard dlq: {exc}", file=sys.stderr)
                failed += 1
                continue
            letter = replayed.letter
            done.update(twin.seq for twin in replayed.with_it)
            also = "".join(f"; with {t.seq} of {t.service}" for t in replayed.with_it)
            if not replayed.published:
                also += "; replayed within the last 2 minutes already: not stored again"
            print(f"replayed {seq} -> {letter.original_subject} (event {letter.event_id or '?'}{also})")
        return 1 if failed else 0

    return on_bus(args.nats_url, work)
