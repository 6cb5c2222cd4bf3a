"""Running one area's sub-command (`hailong device|broker|provision ...`) the same way everywhere."""
from __future__ import annotations

import argparse
import logging
import sys

from common.errors import ConfigError


def dispatch(parser: argparse.ArgumentParser, argv: list[str] | None, *, prog: str,
             errors: dict[tuple[type[BaseException], ...], int]) -> int:
    """Run one area's sub-command: logging to stderr, and expected failures as one clear
    line and an exit code instead of a traceback (a bad config lists every problem, exit 2)."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    except tuple(t for kinds in errors for t in kinds) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return next(code for kinds, code in errors.items() if isinstance(e, kinds))
