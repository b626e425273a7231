"""Console safety: output must never crash on a cp866, cp1251, cp1252 or ASCII stream.

Windows gives a redirected stdout (as Task Scheduler jobs have) the ANSI or OEM code
page with strict errors; a username or message it cannot encode would raise.
"""

from __future__ import annotations

import io
import sys


def make_streams_safe() -> None:
    """Let unencodable characters degrade to '?' on the process's stdout and stderr."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="replace")
