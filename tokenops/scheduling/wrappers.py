"""``token_schedule_hint --write-scripts``: write the wrapper scripts into a project.

Each of the four files is written with this machine's python recorded in the wrappers of
its own platform (the .sh on Linux and macOS, the .bat and .ps1 on Windows), so the
scheduled run uses the environment the command ran in, wherever it lives. The others
are written as their templates are, which look for env, .venv or venv in the project
root. The project root is recorded too when the scripts folder is not ``<root>/scripts``.

Writing again changes nothing when nothing changed ("up to date"); a file tokenops wrote
(its checksum line still matches) or shipped is replaced; a file the user changed is kept
unless ``force``. Everything is checked before anything is written.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import TokenopsError
from .project import WRITE_SCRIPTS, Project
from .wrapper_files import WRAPPERS, Recorded, Wrapper, is_pristine, render

WRITTEN = "written"
UP_TO_DATE = "up to date"
KEPT = "kept (changed by you)"
REPLACED = "written (--force replaced your changes)"


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    status: str  # WRITTEN, UP_TO_DATE, KEPT or REPLACED
    recorded: Recorded

    def line(self) -> str:
        notes = []
        if self.recorded.python:
            notes.append(f"runs {self.recorded.python}")
        if self.recorded.root:
            notes.append(f"project root {self.recorded.root}")
        return f"{self.status}: {self.path}" + (f"  ({'; '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class WriteResult:
    directory: Path
    files: tuple[WrittenFile, ...]
    # How token_schedule_hint is told where these files are ("": the default folder).
    scripts_option: str = ""

    @property
    def kept(self) -> tuple[WrittenFile, ...]:
        return tuple(f for f in self.files if f.status == KEPT)

    @property
    def changed(self) -> bool:
        return any(f.status in (WRITTEN, REPLACED) for f in self.files)

    def lines(self) -> list[str]:
        """One line per file."""
        return [f.line() for f in self.files]

    def next_step(self) -> str:
        hint = f"python manage.py token_schedule_hint{self.scripts_option}"
        return f"Next: '{hint}' prints the schedule lines that run them."

    def error(self) -> str | None:
        """The one line that makes the command fail: the files it kept (None: none)."""
        if not self.kept:
            return None
        names = ", ".join(str(f.path) for f in self.kept)
        them = "them" if len(self.kept) > 1 else "it"
        return (
            f"Kept {names}: changed since tokenops wrote {them}; run "
            f"'{WRITE_SCRIPTS}{self.scripts_option} --force' "
            f"to replace {them} (your changes are lost)."
        )


def file_mode(wrapper: Wrapper) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if wrapper.executable else 0o666) & ~umask


def needs_run_bit(wrapper: Wrapper, path: Path) -> bool:
    return wrapper.executable and os.name != "nt" and not os.access(path, os.X_OK)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_wrappers(
    directory: Path,
    recorded: Mapping[str, Recorded],
    *,
    code_page: int | None = None,
    force: bool = False,
) -> WriteResult:
    """Write the four wrappers into ``directory``.

    ``recorded``: per platform ("windows", "linux"), what its wrappers record; a platform
    left out gets its templates. ``code_page``: the one a .bat is written in (default:
    this machine's OEM code page).
    """
    plans: list[tuple[Wrapper, Path, bytes, Recorded, str]] = []
    for wrapper in WRAPPERS:
        values = recorded.get(wrapper.platform, Recorded())
        if wrapper.python_name is None:
            values = Recorded(root=values.root)
        data = render(wrapper, values, code_page)
        path = directory / wrapper.name
        if path.is_dir():
            raise TokenopsError(f"Cannot write {path}: it is a folder.")
        try:
            existing = path.read_bytes()
        except FileNotFoundError:
            status = WRITTEN
        except OSError as exc:
            raise TokenopsError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        else:
            if existing == data:
                status = WRITTEN if needs_run_bit(wrapper, path) else UP_TO_DATE
            elif is_pristine(wrapper, existing):
                status = WRITTEN
            else:
                status = REPLACED if force else KEPT
        plans.append((wrapper, path, data, values, status))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for wrapper, path, data, _, status in plans:
            if status in (WRITTEN, REPLACED):
                write_atomically(path, data, file_mode(wrapper))
    except OSError as exc:
        raise TokenopsError(f"Cannot write into {directory}: {exc.strerror or exc}.") from exc
    return WriteResult(
        directory=directory,
        files=tuple(WrittenFile(path, status, values) for _, path, _, values, status in plans),
    )


def write_project_wrappers(
    project: Project, *, force: bool = False, code_page: int | None = None
) -> WriteResult:
    """Write the wrappers into the project's scripts folder, recording this python in those
    of this machine's platform (and the root, when the folder is not ``<root>/scripts``)."""
    directory = Path(project.scripts_folder)
    root = Path(project.root)
    recorded_root = None if directory.parent == root else str(root)
    python = os.path.abspath(project.python) if project.python else None
    values = {project.host: Recorded(python=python, root=recorded_root)}
    result = write_wrappers(directory, values, code_page=code_page, force=force)
    if project.scripts is None:
        return result
    return replace(result, scripts_option=" --scripts-dir " + quote_argument(str(directory)))


def quote_argument(text: str) -> str:
    """``text`` as one shell word: sh quoting here, Windows quoting on Windows."""
    return subprocess.list2cmdline([text]) if os.name == "nt" else shlex.quote(text)
