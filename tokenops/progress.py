"""A progress bar on a terminal, nothing anywhere else."""

from __future__ import annotations

from typing import IO, Any


class BarProgress:
    """tqdm behind the ``purging.Progress`` protocol."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.bar: Any = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="rows", file=self.stream, ascii=True, leave=False)

    def advance(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def terminal_progress(stream: IO[str], *, enabled: bool) -> BarProgress | None:
    isatty = getattr(stream, "isatty", None)
    if enabled and isatty is not None and isatty():
        return BarProgress(stream)
    return None
