"""The four wrapper scripts tokenops ships, as files: their packaged templates, a copy with
the python (and project root) filled in, and what a written copy records, read back.

A template records nothing: it runs ``manage.py`` in the parent of its folder with the
first of env, .venv or venv there, else python on PATH. ``token_schedule_hint
--write-scripts`` fills in the python that ran it (and the project root when the scripts
folder is elsewhere), and adds a checksum line, by which a later run tells its own
unchanged file from one a user has edited.

How each value is written is how its reader reads it:

- .sh: a single-quoted sh word, the path's own bytes (``os.fsencode``).
- .bat: ``set "NAME=value"`` with ``%`` doubled, encoded in the OEM code page: cmd.exe
  reads a .bat in the console's code page (cp866 on a Russian Windows), not UTF-8, and
  the lines come before the wrapper's ``chcp 65001``. A path that code page cannot
  encode is refused.
- .ps1: a single-quoted PowerShell string (its five quote characters doubled); Windows
  PowerShell 5.1 reads a BOM-less script in the ANSI code page, so a non-ASCII value
  makes the file UTF-8 with a BOM, which every PowerShell reads.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from importlib.resources import files

from ..errors import TokenopsError

# Where the templates are: tokenops/scheduling/scripts (package data).
TEMPLATES = "scripts"
PY_QUOTES = "'\u2018\u2019\u201a\u201b"  # PowerShell reads all five as a single quote
BOM = codecs.BOM_UTF8
CHECKSUM = re.compile(
    rb"^(?:rem|#) Written by .*--write-scripts.* sha256 ([0-9a-f]{64})\r?\n", re.M
)
# Templates of earlier releases (their bytes as checked out, and as stored in git), so a
# copy a user made by hand, unchanged, is not mistaken for an edited file.
EARLIER_TEMPLATES = {
    "cleanup_tokens.bat": {
        "9b5baee3b1ef4b9232c9d8842b09ead515692a01d3b638546c26713a80749456",
        "f27bbfc8b14e0b7493a6dd64b34476f3a59a1d3de9169ef34f397e24149a919c",
    },
    "cleanup_tokens.ps1": {
        "b0a1a2a9ccad71f5b718046171634c5c8da8058153f970e0129f49bd4c22cabd",
        "07c52f2ac774233ba7b9502086aeac91dc0cb99f29f79f70c4bb5cc6cea5be28",
    },
    "register_task.ps1": {
        "28e8942425cc2dbc78ea46a89bbbaff380e94631f14f83b098f851d5e9c99ebd",
        "e075e8d63bccab6840ca3843742bdcf3f68760acafb6b169bd17cc7c053f841f",
    },
    "cleanup_tokens.sh": {"66cab5bab70699a7573266030af355f212c64d07b2ca9067e8258c7fbd610bbd"},
}


@dataclass(frozen=True)
class Recorded:
    """What a written wrapper records: the python it runs, the project root (None: none)."""

    python: str | None = None
    root: str | None = None


@dataclass(frozen=True)
class Wrapper:
    """One wrapper file: its name, its platform, and the lines that record values."""

    name: str
    platform: str  # "windows" or "linux"
    kind: str  # "bat", "ps1" or "sh"
    python_name: str | None  # the variable that records the python (None: runs none)
    root_name: str

    @property
    def executable(self) -> bool:
        return self.kind == "sh"

    @property
    def newline(self) -> bytes:
        return b"\n" if self.kind == "sh" else b"\r\n"

    def template(self) -> bytes:
        return (files(__package__) / TEMPLATES / self.name).read_bytes()

    def prefix(self, variable: str) -> bytes:
        """What comes before the value on the line that records ``variable``."""
        return {"bat": f'set "{variable}=', "ps1": f"${variable} = ", "sh": f"{variable}="}[
            self.kind
        ].encode("ascii")

    def recording_line(self, variable: str, value: bytes) -> bytes:
        """The line recording ``value`` (quoted as ``quoted`` does; the .bat's is bare)."""
        return self.prefix(variable) + value + (b'"' if self.kind == "bat" else b"")

    def empty_line(self, variable: str) -> bytes:
        """The template's line for ``variable``, which records nothing."""
        return self.recording_line(variable, b"" if self.kind == "bat" else b"''")


WRAPPERS = (
    Wrapper("cleanup_tokens.bat", "windows", "bat", "RECORDED_PY", "RECORDED_ROOT"),
    Wrapper("cleanup_tokens.ps1", "windows", "ps1", "recordedPython", "recordedRoot"),
    Wrapper("register_task.ps1", "windows", "ps1", None, "recordedRoot"),
    Wrapper("cleanup_tokens.sh", "linux", "sh", "recorded_python", "recorded_root"),
)
BY_NAME = {wrapper.name: wrapper for wrapper in WRAPPERS}


def oem_code_page() -> int:
    """The code page cmd.exe reads a .bat in here: Windows' OEM one (437 elsewhere)."""
    if sys.platform == "win32":
        import ctypes

        return int(ctypes.windll.kernel32.GetOEMCP())  # type: ignore[attr-defined]
    return 437


def codec_of(code_page: int) -> str:
    name = f"cp{code_page}"
    try:
        codecs.lookup(name)
    except LookupError:
        raise TokenopsError(
            f"Cannot write cleanup_tokens.bat: Python has no codec for this machine's OEM "
            f"code page {code_page}."
        ) from None
    return name


def check_path(wrapper: Wrapper, what: str, value: str) -> None:
    """A line break or control character would end the line; Windows paths have no '"'."""
    bad = [c for c in value if ord(c) < 32 or (wrapper.platform == "windows" and c == '"')]
    if bad:
        raise TokenopsError(
            f"Cannot record {what} {value!r} in {wrapper.name}: {bad[0]!r} cannot be "
            "written into a script line."
        )


def quoted(wrapper: Wrapper, what: str, value: str, code_page: int) -> bytes:
    """``value`` as ``wrapper`` records it (in a .bat: inside the set command's quotes)."""
    check_path(wrapper, what, value)
    if wrapper.kind == "sh":
        return b"'" + os.fsencode(value).replace(b"'", b"'\\''") + b"'"
    if wrapper.kind == "ps1":
        return ("'" + re.sub(f"([{PY_QUOTES}])", r"\1\1", value) + "'").encode("utf-8")
    codec = codec_of(code_page)
    try:
        encoded = value.replace("%", "%%").encode(codec)
    except UnicodeEncodeError as exc:
        raise TokenopsError(
            f"Cannot record {what} {value} in {wrapper.name}: cmd.exe reads a .bat in this "
            f"machine's OEM code page ({codec}), which has no {value[exc.start]!r}; use a "
            f"path without it."
        ) from None
    return encoded


def fill(wrapper: Wrapper, template: bytes, variable: str, value: bytes) -> bytes:
    line = wrapper.empty_line(variable) + wrapper.newline
    if template.count(line) != 1:
        raise AssertionError(f"{wrapper.name}: the template must hold {line!r} once")
    return template.replace(line, wrapper.recording_line(variable, value) + wrapper.newline)


def checksum_line(wrapper: Wrapper, body: bytes) -> bytes:
    comment = b"rem" if wrapper.kind == "bat" else b"#"
    return (
        comment
        + b" Written by 'manage.py token_schedule_hint --write-scripts', which replaces this"
        + b" file only while it is unchanged: sha256 "
        + hashlib.sha256(body).hexdigest().encode("ascii")
        + wrapper.newline
    )


def insert_checksum(wrapper: Wrapper, body: bytes) -> bytes:
    """The checksum line goes after the .bat's ``@echo off`` and the .sh's ``#!`` line, and
    first in a .ps1 (comment-based help may follow comments); it covers everything else."""
    line = checksum_line(wrapper, body)
    start = 0
    if body.startswith(BOM):
        start = len(BOM)
    if wrapper.kind in ("bat", "sh"):
        start = body.index(wrapper.newline) + len(wrapper.newline)
    return body[:start] + line + body[start:]


def render(wrapper: Wrapper, recorded: Recorded, code_page: int | None = None) -> bytes:
    """The file ``--write-scripts`` writes: the template, ``recorded`` filled in, a checksum."""
    code_page = oem_code_page() if code_page is None else code_page
    body = wrapper.template()
    values = [(wrapper.root_name, "the project root", recorded.root)]
    if wrapper.python_name:
        values.append((wrapper.python_name, "python", recorded.python))
    for variable, what, value in values:
        if value is not None:
            body = fill(wrapper, body, variable, quoted(wrapper, what, value, code_page))
    if wrapper.kind == "ps1" and not body.isascii():
        body = BOM + body
    return insert_checksum(wrapper, body)


def is_pristine(wrapper: Wrapper, data: bytes) -> bool:
    """``data`` is a file tokenops wrote or shipped, unchanged since (safe to replace)."""
    digest = hashlib.sha256(data).hexdigest()
    if data == wrapper.template() or digest in EARLIER_TEMPLATES.get(wrapper.name, ()):
        return True
    bom = BOM if data.startswith(BOM) else b""
    rest = data[len(bom) :]
    match = CHECKSUM.search(rest)
    if match is None:
        return False
    body = bom + rest[: match.start()] + rest[match.end() :]
    return hashlib.sha256(body).hexdigest() == match[1].decode("ascii")


def read_value(wrapper: Wrapper, data: bytes, variable: str, code_page: int) -> str | None:
    """What ``data`` (a wrapper's bytes) records in ``variable``; None when nothing."""
    match = re.search(rb"^" + re.escape(wrapper.prefix(variable)) + rb"(.*?)\r?$", data, re.M)
    if match is None:
        return None
    raw = match[1]
    if wrapper.kind == "bat":
        # set "NAME=value": the value ends at the closing quote, %% stands for %.
        if len(raw) < 2 or not raw.endswith(b'"'):
            return None
        return raw[:-1].decode(codec_of(code_page), errors="replace").replace("%%", "%")
    if wrapper.kind == "sh":
        if len(raw) < 3 or not (raw.startswith(b"'") and raw.endswith(b"'")):
            return None
        return os.fsdecode(raw[1:-1].replace(b"'\\''", b"'"))
    text = raw.decode("utf-8", errors="replace")
    if len(text) < 3 or text[0] not in PY_QUOTES or text[-1] not in PY_QUOTES:
        return None
    return re.sub(f"([{PY_QUOTES}])\\1", r"\1", text[1:-1])


def read_recorded(wrapper: Wrapper, data: bytes, code_page: int | None = None) -> Recorded:
    code_page = oem_code_page() if code_page is None else code_page
    python = (
        read_value(wrapper, data, wrapper.python_name, code_page) if wrapper.python_name else None
    )
    return Recorded(python=python, root=read_value(wrapper, data, wrapper.root_name, code_page))
