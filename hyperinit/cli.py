"""The ``hyperinit`` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import logging
import sys

from hyperinit.commands import bench, c2l, hub, init, train

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``hyperinit`` parser, every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="hyperinit", description="Hypernetwork initialisation for medical imaging models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    init.add_parser(sub)
    hub.add_download_parser(sub)
    hub.add_list_parser(sub)
    c2l.add_parser(sub)
    bench.add_parser(sub)
    train.add_parser(sub)

    from hyperinit.localize.cli import add_localize_parser

    add_localize_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hyperinit.errors import HyperInitError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("hyperinit.initialize").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except HyperInitError as e:
        print(f"hyperinit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
