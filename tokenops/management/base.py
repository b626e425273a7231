"""What every tokenops command shares: one-line errors, safe output, common options.

Exit codes are decided here for every command (README, "Errors"): whatever was typed on
the command line and is wrong, an option, its value or a --database alias, is a usage
error (2, argparse's one line); every other fault, TOKENOPS, the database, the
environment, is a CommandError (1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..app_settings import MAX_ROWS, is_budget
from ..console import (
    discard_pending_output,
    interrupt_behind,
    interrupts_raised,
    make_streams_safe,
)
from ..durations import EXAMPLES, parse_duration
from ..errors import ERROR, USAGE_ERROR, TokenopsError, cut, database_error, shown, unknown_alias

# 128 + SIGINT, as a shell reports Ctrl+C; SIGTERM ends the same way (it was asked to stop).
INTERRUPTED = 130
START, OUTPUT, END = "start", "output", "end"


class OneLineParser(CommandParser):
    """CommandParser prints the whole usage before an error; a scheduler log wants one line.

    What argparse itself echoes back (a bad choice, unknown arguments) is cut like every
    other echoed input.
    """

    def error(self, message: str) -> Any:
        if self.called_from_command_line:
            self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")
        raise CommandError(_("Error: %(message)s") % {"message": message}, returncode=USAGE_ERROR)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(
                action,
                _("invalid choice: %(value)s (choose from %(choices)s)")
                % {"value": shown(value), "choices": ", ".join(map(repr, action.choices))},
            )

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's own parse_args, with the unknown arguments cut (no command here sets
        CommandParser's ``missing_args_message``, the one thing its override adds)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            self.error(
                _("unrecognized arguments: %(arguments)s") % {"arguments": cut(" ".join(extra))}
            )
        return parsed


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
    digits = text.strip().lstrip("0") or "0"
    # Length first: int() of thousands of digits is slow, or refused outright.
    small = len(digits) <= len(str(MAX_ROWS))
    value = int(digits) if small and text.isascii() and digits.isdigit() else -1
    if not low <= value <= MAX_ROWS:
        raise argparse.ArgumentTypeError(
            _("expected a whole number from %(low)s to %(high)s, got %(text)s")
            % {"low": low, "high": MAX_ROWS, "text": shown(text)}
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
            _("expected a number of seconds above 0, got %(text)s") % {"text": shown(text)}
        )
    return value


def database_arg(text: str) -> str:
    """A configured database alias: a mistyped one is a usage error, like any bad option."""
    if text not in connections.settings:
        raise argparse.ArgumentTypeError(unknown_alias(text))
    return text


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def count_arg(text: str) -> int:
    return whole_number(text, 0)


class TokenopsCommand(BaseCommand):
    # ensure_ready() explains a missing app or table in one line; Django's system
    # check framework would print a multi-line block instead.
    requires_system_checks: list[str] = []
    # Where an interruption (Ctrl+C, SIGTERM) finds the command, and what it then says.
    phase = START
    interrupted_at_start = gettext_lazy("Interrupted: nothing was done.")
    interrupted_in_output = gettext_lazy(
        "Interrupted while writing the output: it was not written in full."
    )
    interrupted_at_end = gettext_lazy("Interrupted after the output was written: nothing was lost.")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineParser
        # argparse wraps the description with re, which wants a str, not a lazy string.
        parser.description = str(self.help) if self.help else None
        self.parser = parser
        return parser

    def usage_error(self, message: str) -> NoReturn:
        """Options that do not go together: argparse's one line and exit 2, like a bad value."""
        self.parser.error(message)
        raise AssertionError("unreachable: OneLineParser.error raises")

    def run_from_argv(self, argv: list[str]) -> None:
        """The command line: an interruption at any moment is exit 130 and one line.

        Signals are taken over first, so parsing, the work, writing the output and closing
        the connections are all covered (what runs before Django loads the command is not
        this command's to guard).
        """
        with interrupts_raised():
            try:
                make_streams_safe()
                super().run_from_argv(argv)
            except KeyboardInterrupt:
                if self.phase == OUTPUT:
                    discard_pending_output(self.stdout._out)
                message = {
                    START: self.interrupted_at_start,
                    OUTPUT: self.interrupted_in_output,
                    END: self.interrupted_at_end,
                }[self.phase]
                self.stderr.write(f"CommandError: {message}")
                sys.exit(INTERRUPTED)

    def begin_output(self) -> None:
        """The work is done and its result is about to be written (see run_from_argv)."""
        self.phase = OUTPUT

    def add_database_argument(self, parser: CommandParser, *, none_default: bool = False) -> None:
        """``none_default``: the option is None when not given (the command fills it in)."""
        parser.add_argument(
            "--database",
            type=database_arg,
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
            output = super().execute(*args, **options)
            # Written now, while an interruption can still be reported, not at exit.
            self.stdout.flush()
        except TokenopsError as exc:
            raise CommandError(str(exc), returncode=ERROR) from exc
        except DatabaseError as exc:
            interrupt = interrupt_behind(exc)
            if interrupt is not None:
                raise interrupt from None
            alias = options.get("database") or DEFAULT_DB_ALIAS
            raise CommandError(database_error(alias, exc), returncode=ERROR) from exc
        self.phase = END
        return output
