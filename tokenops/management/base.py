"""What every tokenops command shares: one-line errors, safe output, common options."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.utils.translation import gettext as _

from ..app_settings import MAX_ROWS, is_budget
from ..console import make_streams_safe
from ..durations import EXAMPLES, parse_duration
from ..errors import TokenopsError, database_error

USAGE_ERROR = 2


class OneLineParser(CommandParser):
    """CommandParser prints the whole usage before an error; a scheduler log wants one line."""

    def error(self, message: str) -> Any:
        if self.called_from_command_line:
            self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")
        raise CommandError(_("Error: %(message)s") % {"message": message}, returncode=USAGE_ERROR)


def argument_type(check: Callable[[str], Any], *, keep_text: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` from a checker that raises TokenopsError.

    ``keep_text`` returns the argument as written (schedules paste it as it is).
    """

    def convert(text: str) -> Any:
        try:
            value = check(text)
        except TokenopsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return text.strip().lower() if keep_text else value

    return convert


duration_arg = argument_type(parse_duration)


def whole_number(text: str, low: int) -> int:
    """An ASCII whole number from ``low`` to MAX_ROWS, or an argparse error."""
    value = int(text) if text.isascii() and text.strip().isdigit() else -1
    if not low <= value <= MAX_ROWS:
        raise argparse.ArgumentTypeError(
            _("expected a whole number from %(low)s to %(high)s, got %(text)s")
            % {"low": low, "high": MAX_ROWS, "text": repr(text)}
        )
    return value


def seconds_arg(text: str) -> float:
    """A number of seconds above 0 (a time budget), or an argparse error."""
    try:
        value = float(text) if text.isascii() else -1.0
    except ValueError:
        value = -1.0
    if not is_budget(value):
        raise argparse.ArgumentTypeError(
            _("expected a number of seconds above 0, got %(text)s") % {"text": repr(text)}
        )
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def count_arg(text: str) -> int:
    return whole_number(text, 0)


class TokenopsCommand(BaseCommand):
    # ensure_ready() explains a missing app or table in one line; Django's system
    # check framework would print a multi-line block instead.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineParser
        # argparse wraps the description with re, which wants a str, not a lazy string.
        parser.description = str(self.help) if self.help else None
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        make_streams_safe()
        super().run_from_argv(argv)

    def add_database_argument(self, parser: CommandParser, *, none_default: bool = False) -> None:
        """``none_default``: the option is None when not given (the command fills it in)."""
        parser.add_argument(
            "--database",
            default=None if none_default else DEFAULT_DB_ALIAS,
            help=_('Database alias to work on (default: "%(default)s").').replace(
                "%(default)s", DEFAULT_DB_ALIAS
            ),
        )

    def add_older_than_argument(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=duration_arg,
            metavar="DURATION",
            help=_(
                "Keep tokens until they have been expired this long, for example "
                "%(examples)s (default: TOKENOPS['OLDER_THAN'], which defaults to 0). "
                "LEEWAY and the sliding refresh window are always respected on top of it."
            ).replace("%(examples)s", str(EXAMPLES)),
        )

    def execute(self, *args: Any, **options: Any) -> Any:
        make_streams_safe()
        try:
            return super().execute(*args, **options)
        except TokenopsError as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            alias = options.get("database") or DEFAULT_DB_ALIAS
            raise CommandError(database_error(alias, exc)) from exc
