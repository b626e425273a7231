"""Wine as a Windows for the .bat tests: one prefix per session, stand-in .exe programs."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tests.slow.stand_in import UTF8_LINE

LAUNCHER_NAME = "t64.exe"


def windows_path(path: Path) -> str:
    """The path of a Linux file as Wine's programs see it (drive Z: is /)."""
    return "Z:" + str(PurePosixPath(path)).replace("/", "\\")


def as_wine_console(text: str) -> str:
    """What Wine's cmd.exe echo writes for ``text``: no console, so no code page 65001.

    Real Windows writes UTF-8 there (chcp 65001); Wine degrades non-ASCII to '?'.
    """
    return re.sub(r"[^\x00-\x7f]", "?", text)


def distlib_launcher() -> Path:
    """pip's vendored Windows launcher: a real .exe that runs its shebang line."""
    import pip._vendor.distlib as distlib

    path = Path(distlib.__file__).parent / LAUNCHER_NAME
    assert path.is_file(), f"{path} missing: pip's Windows launchers are needed"
    return path


def make_windows_exe(target: Path, shebang_command: str) -> Path:
    """A python.exe stand-in: the launcher, a shebang and a zip with an empty __main__.py.

    The launcher starts ``shebang_command "<this exe>" <its own arguments>`` and returns
    that program's exit code.
    """
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("__main__.py", "")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(
        distlib_launcher().read_bytes()
        + b"#!"
        + shebang_command.encode("ascii")
        + b"\r\n"
        + archive.getvalue()
    )
    return target


RECORD_BAT = r"""@echo off
echo STUB exe=["%~1"]
echo STUB argv=[%*]
echo STUB cwd=["%CD%"]
if exist manage.py echo STUB manage.py is here
echo STUB PYTHONUTF8=[%PYTHONUTF8%]
echo STUB PYTHONIOENCODING=[%PYTHONIOENCODING%]
type "{utf8_file}"
echo STUB to stderr 1>&2
exit /b %STUB_EXIT%
"""


# Prints each argument as <arg>, parsed by Windows rules; cmd plays no part, so a literal
# & or ( in an argument reaches it intact.
ARGS_JS = """var a = WScript.Arguments;
var out = [];
for (var i = 0; i < a.length; i++) out.push("<" + a(i) + ">");
WScript.Echo("ARGS " + out.join(" "));
WScript.Quit(0);
"""


def js_args(output: str) -> list[str]:
    """The arguments ARGS_JS printed."""
    line = next(line for line in output.splitlines() if line.startswith("ARGS "))
    return re.findall(r"<(.*?)>", line)


@dataclass
class Wine:
    """One Wine prefix (a fake C: drive) for the test session, with a running wineserver."""

    env: dict[str, str]
    stub_dir: Path

    def run(
        self, args: list[str], *, cwd: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["wine", *args],
            cwd=cwd,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            timeout=180,
            check=False,
        )

    def run_in_console(
        self, args: list[str], *, cwd: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Like ``run``, but with a terminal: Wine then gives the program a console, as Task
        Scheduler gives cmd.exe one (its code page is the OEM one, and chcp 65001 works)."""
        master, slave = os.openpty()
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal has closed it
                    return
                if not chunk:
                    return
                chunks.append(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            process = subprocess.Popen(
                ["wine", *args],
                cwd=cwd,
                env={**self.env, **(extra_env or {})},
                stdin=slave,
                stdout=slave,
                stderr=slave,
            )
            os.close(slave)
            slave = -1
            try:
                code = process.wait(timeout=180)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            reader.join(timeout=10)
        finally:
            if slave != -1:
                os.close(slave)
            os.close(master)
        return subprocess.CompletedProcess(["wine", *args], code, b"".join(chunks), b"")

    def cmd(
        self, *args: str, cwd: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """``cmd /c args``, the way the issue's recipe starts a script."""
        return self.run(["cmd", "/c", *args], cwd=cwd, extra_env=extra_env)

    def stub_python(self, target: Path, tag: str | None = None) -> Path:
        """A python.exe at ``target`` that runs record.bat with the arguments it got.

        With ``tag`` (ASCII), record.bat's first argument is the tag, before the exe's
        path: it tells which stand-in ran whatever its path holds (Wine's cmd drops a
        percent sign from an expanded argument, Windows' does not).
        """
        record = self.stub_dir / "record.bat"
        command = f"C:\\windows\\system32\\cmd.exe /c {windows_path(record)}"
        return make_windows_exe(target, f"{command} {tag}" if tag else command)

    def args_program(self, target: Path) -> Path:
        """An .exe at ``target`` that prints its arguments as Windows programs split them."""
        script = self.stub_dir / "args.js"
        return make_windows_exe(
            target, f"C:\\windows\\system32\\cscript.exe //nologo {windows_path(script)}"
        )


def russian_locale(base: Path) -> dict[str, str]:
    """The environment of a Russian Windows under Wine (OEM code page 866, ANSI 1251).

    Wine takes its locale from the Unix one, which must exist: ru_RU.UTF-8 is compiled
    here with localedef into ``base`` (the machine's locales are left alone).
    """
    localedef = shutil.which("localedef")
    if localedef is None:
        raise RuntimeError("localedef is missing: apt-get install locales")
    target = base / "ru_RU.UTF-8"
    done = subprocess.run(
        [localedef, "-i", "ru_RU", "-f", "UTF-8", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if not (target / "LC_CTYPE").is_file():
        raise RuntimeError(f"localedef could not build ru_RU.UTF-8: {done.stderr.strip()}")
    return {"LANG": "ru_RU.UTF-8", "LOCPATH": str(base)}


def start_wine(base: Path) -> Wine:
    """Create the prefix (wineboot, slow once) and keep its wineserver up for the session."""
    if shutil.which("wine") is None or shutil.which("wineserver") is None:
        raise RuntimeError(
            "Wine is not installed: apt-get install wine wine64 (CI's .ci/run installs it)"
        )
    prefix = base / "prefix"
    stub_dir = base / "stub"
    stub_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "WINEPREFIX": str(prefix),
        "WINEDEBUG": "-all",
        # No Mono or Gecko download prompts during wineboot (there is no network anyway).
        "WINEDLLOVERRIDES": "mscoree=;mshtml=",
        "LANG": "C.UTF-8",
    }
    env.pop("LC_ALL", None)
    env.pop("DISPLAY", None)
    utf8_file = stub_dir / "utf8.txt"
    utf8_file.write_bytes((UTF8_LINE + "\r\n").encode("utf-8"))
    (stub_dir / "args.js").write_bytes(ARGS_JS.replace("\n", "\r\n").encode("ascii"))
    (stub_dir / "record.bat").write_bytes(
        RECORD_BAT.format(utf8_file=windows_path(utf8_file)).replace("\n", "\r\n").encode("ascii")
    )
    # The first start creates the prefix (wineboot). Its background services (services.exe,
    # winedevice, ...) outlive it and keep the descriptors they inherit: /dev/null, never
    # a pipe that a later test waits on.
    quiet = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }
    # A persistent wineserver (and so services) makes each later start quick.
    prefix.mkdir()
    subprocess.run(["wineserver", "-p"], env=env, check=True, timeout=60, **quiet)
    subprocess.run(["wine", "cmd", "/c", "ver"], env=env, timeout=600, check=False, **quiet)
    check = subprocess.run(
        ["wine", "cmd", "/c", "ver"], env=env, capture_output=True, timeout=120, check=False
    )
    if check.returncode != 0 or b"Windows" not in check.stdout:
        raise RuntimeError(f"wine cmd does not start: {check.stdout!r} {check.stderr!r}")
    return Wine(env=env, stub_dir=stub_dir)


def stop_wine(wine: Wine) -> None:
    subprocess.run(["wineserver", "-k"], env=wine.env, timeout=60, check=False)
