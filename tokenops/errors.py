"""The one exception tokenops raises for problems a user can fix."""


class TokenopsError(Exception):
    """A clear, one-line problem (bad input, missing table, unreachable database)."""
