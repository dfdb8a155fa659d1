"""Administration commands: ``python -m bot.security.admin <area> <command> ...``.

Each area registers its subcommands in a function of its own below, so the
parts of the trust work stay apart:

- ``rest-caller add NAME | revoke NAME | list``: credentials of trusted REST callers.
- ``agent add USER --role agent|supervisor|admin [--name NAME] [--prompt | --password-stdin | --oidc-only]
  | disable USER | reset USER [--prompt | --password-stdin] | list``: staff accounts of the agent inbox.
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


def _read_password(args: argparse.Namespace) -> Optional[str]:
    """The password to set: from stdin (--password-stdin), typed twice at a prompt (--prompt), or None (generate)."""
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\r\n")
    if getattr(args, "prompt", False):
        import getpass

        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise ValueError("the two passwords differ")
        return first
    return None


def _agent_commands(areas: "argparse._SubParsersAction") -> None:
    import getpass

    from bot.security import staff

    actor = f"cli:{getpass.getuser()}"
    parser = areas.add_parser("agent", help="staff accounts of the agent inbox")
    commands = parser.add_subparsers(dest="command", required=True)

    def password_options(command: argparse.ArgumentParser) -> None:
        source = command.add_mutually_exclusive_group()
        source.add_argument("--prompt", action="store_true", help="type the password (twice) instead of generating one")
        source.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")

    add = commands.add_parser("add", help="create an account (a generated password is printed once)")
    add.add_argument("username", help="lower-case letters, digits, '.', '_', '@', '+', '-' (an e-mail address for OIDC)")
    add.add_argument("--role", choices=staff.ROLES, default="agent")
    add.add_argument("--name", help="the display name customers see (default: the username)")
    add.add_argument("--oidc-only", action="store_true", help="no password: signs in through the OIDC provider only")
    password_options(add)

    def do_add(args: argparse.Namespace) -> int:
        password = None if args.oidc_only else _read_password(args)
        created = staff.add_account(None, args.username, password, role=args.role, display_name=args.name,
                                    actor=actor, oidc_only=args.oidc_only)
        print(f"inbox account '{staff.normal_username(args.username)}' added with role {args.role}")
        if password is None and created:
            print("Its password (shown only now; hand it over safely):")
            print(created)
        return 0

    add.set_defaults(run=do_add)

    disable = commands.add_parser("disable", help="stop an account signing in and end its sessions")
    disable.add_argument("username")

    def do_disable(args: argparse.Namespace) -> int:
        staff.disable_account(None, args.username, actor=actor)
        print(f"inbox account '{staff.normal_username(args.username)}' disabled; its sessions ended")
        return 0

    disable.set_defaults(run=do_disable)

    reset = commands.add_parser("reset", help="set a new password (generated unless given) and end the account's sessions")
    reset.add_argument("username")
    password_options(reset)

    def do_reset(args: argparse.Namespace) -> int:
        chosen = _read_password(args)
        password = staff.reset_password(None, args.username, chosen, actor=actor)
        print(f"inbox account '{staff.normal_username(args.username)}': new password set; its sessions ended")
        if chosen is None:
            print("The new password (shown only now):")
            print(password)
        return 0

    reset.set_defaults(run=do_reset)

    listing = commands.add_parser("list", help="every account, its role and whether it is enabled")

    def do_list(_args: argparse.Namespace) -> int:
        for account in staff.list_accounts(None):
            state = "disabled" if account.disabled else "enabled"
            login = "password" if account.has_password else "oidc-only"
            print(f"{account.username:<32} {account.role:<11} {state:<9} {login:<9} {account.display_name}")
        return 0

    listing.set_defaults(run=do_list)


# One function per area; each adds its own subparser to `areas`.
AREAS: List[Callable[["argparse._SubParsersAction"], None]] = [_rest_caller_commands, _agent_commands]


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
