"""Administration commands: ``python -m bot.security.admin <area> <command> ...``.

Each area registers its subcommands in a function of its own below, so the
parts of the trust work stay apart:

- ``rest-caller add NAME | revoke NAME | list``: credentials of trusted REST callers.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional


def _rest_caller_commands(areas: "argparse._SubParsersAction") -> None:
    from bot.security import callers

    parser = areas.add_parser("rest-caller", help="bearer credentials of trusted REST callers")
    commands = parser.add_subparsers(dest="command", required=True)

    add = commands.add_parser("add", help="create a caller and print its token (shown once)")
    add.add_argument("name", help="the caller's name (letters, digits, '_', '-'); part of its conversation ids")

    def do_add(args: argparse.Namespace) -> int:
        token = callers.add_caller(args.name)
        print(f"REST caller '{args.name}' added. Its token (shown only now; keep it in the caller's secret store):")
        print(token)
        return 0

    add.set_defaults(run=do_add)

    revoke = commands.add_parser("revoke", help="revoke a caller's token (takes effect within seconds, no restart)")
    revoke.add_argument("name")

    def do_revoke(args: argparse.Namespace) -> int:
        if not callers.revoke_caller(args.name):
            print(f"no active REST caller named '{args.name}'", file=sys.stderr)
            return 1
        print(f"REST caller '{args.name}' revoked")
        return 0

    revoke.set_defaults(run=do_revoke)

    listing = commands.add_parser("list", help="callers in the database and in REST_CALLER_TOKENS")

    def do_list(_args: argparse.Namespace) -> int:
        for row in callers.list_callers():
            print(f"{row['name']:<24} {row['source']:<12} {row['state']}")
        return 0

    listing.set_defaults(run=do_list)


# One function per area; each adds its own subparser to `areas`.
AREAS: List[Callable[["argparse._SubParsersAction"], None]] = [_rest_caller_commands]


def build_parser() -> argparse.ArgumentParser:
    """The command line parser with every area's subcommands."""
    parser = argparse.ArgumentParser(prog="python -m bot.security.admin", description=__doc__.splitlines()[0])
    areas = parser.add_subparsers(dest="area", required=True)
    for register in AREAS:
        register(areas)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one administration command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as exc:  # a bad name, a duplicate: say what is wrong, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
