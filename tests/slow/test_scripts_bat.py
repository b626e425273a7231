"""cleanup_tokens.bat, run for real by Wine's cmd.exe with a stand-in python.exe: the
template as a user copies it, and the file --write-scripts writes, with its python
recorded, in a Russian Windows (OEM code page 866).

Wine is required: a missing Wine fails these tests, it never skips them.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath

import pytest

from tests.powershell import register_task_argument
from tests.slow.stand_in import SCRIPTS, UTF8_LINE, fake_project, stub_lines
from tests.slow.wine import (
    Wine,
    as_wine_console,
    js_args,
    make_windows_exe,
    russian_locale,
    start_wine,
    stop_wine,
    windows_path,
)
from tests.windows import split_windows
from tokenops.scheduling.hints import schtasks_create
from tokenops.scheduling.project import Project
from tokenops.scheduling.schedule import parse_schedule
from tokenops.scheduling.wrapper_files import Recorded
from tokenops.scheduling.wrappers import write_wrappers

pytestmark = pytest.mark.slow

# Spaces, non-ASCII, parentheses and an ampersand: all legal in a Windows folder name.
PROJECT_NAME = "проект ёж (demo) & co"
NO_PYTHON = 9009


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    try:
        session = start_wine(tmp_path_factory.mktemp("wine"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield session
    stop_wine(session)


@pytest.fixture(scope="session")
def russian(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a Russian Windows (a real ru_RU locale, so cp866 and cp1251)."""
    try:
        return russian_locale(tmp_path_factory.mktemp("locale"))
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return fake_project(tmp_path / PROJECT_NAME, "cleanup_tokens.bat")


def run_bat(
    wine: Wine,
    project: Path,
    *args: str,
    cwd: Path,
    exit_code: int = 0,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """Start the .bat as Windows starts a .bat action (CreateProcess), return the log too.

    Once, on a loaded machine, Wine itself failed to start the .bat: exit 1, no output, no
    log (seen in CI's fourth run; the same test passed in the three before it). The .bat
    always writes its log first, so a run that left nothing at all is tried once more; a
    real failure of the .bat fails both times.
    """
    log = project / "logs" / "cleanup_tokens.log"
    for _attempt in range(2):
        result = wine.run(
            [windows_path(project / "scripts" / "cleanup_tokens.bat"), *args],
            cwd=cwd,
            extra_env={"STUB_EXIT": str(exit_code), **(extra_env or {})},
        )
        if log.exists() or result.stdout or result.stderr:
            break
    assert log.is_file(), result
    return result, log.read_bytes().decode("utf-8")


def shown(path: Path) -> str:
    """``path`` as the .bat and the stub echo it under Wine."""
    return as_wine_console(windows_path(path))


@pytest.mark.parametrize("venv", ["env", ".venv", "venv"])
def test_each_venv_folder_name_is_found(wine, project, elsewhere, venv):
    python = wine.stub_python(project / venv / "Scripts" / "python.exe")

    result, log = run_bat(wine, project, "--dry-run", cwd=elsewhere)

    assert result.returncode == 0, result
    assert stub_lines(log)["exe"] == f'"{shown(python)}"'
    assert f'python: "{shown(python)}"' in log
    assert "using python on PATH" not in log


@pytest.mark.parametrize(
    ("folders", "chosen"),
    [
        (["env", ".venv", "venv"], "env"),
        ([".venv", "venv"], ".venv"),
        (["venv", "env-without-python"], "venv"),
    ],
)
def test_first_venv_with_a_python_wins(wine, project, elsewhere, folders, chosen):
    for folder in folders:
        if folder == "env-without-python":
            (project / "env" / "Scripts").mkdir(parents=True)
        else:
            wine.stub_python(project / folder / "Scripts" / "python.exe")

    result, log = run_bat(wine, project, cwd=elsewhere)

    assert result.returncode == 0, result
    expected = shown(project / chosen / "Scripts" / "python.exe")
    assert stub_lines(log)["exe"] == f'"{expected}"'


def test_without_a_venv_python_on_path_is_used_and_said(wine, project, elsewhere, tmp_path):
    on_path = wine.stub_python(tmp_path / "bin dir" / "python.exe")

    result, log = run_bat(
        wine,
        project,
        "--dry-run",
        cwd=elsewhere,
        exit_code=1,
        extra_env={"WINEPATH": windows_path(on_path.parent)},
    )

    assert result.returncode == 1, result
    assert (
        "no venv found (looked for env, .venv and venv in the project root), using python on PATH"
        in log
    )
    assert stub_lines(log)["exe"] == f'"{shown(on_path)}"'


def test_without_any_python_the_log_says_so_and_the_run_fails(wine, project, elsewhere):
    result, log = run_bat(wine, project, cwd=elsewhere)

    # 9009 is cmd's "not recognized" code; a Linux exit status keeps its low byte.
    assert result.returncode == NO_PYTHON % 256, result
    assert "no python on PATH" in log
    assert log.rstrip().endswith(f"exit code {NO_PYTHON}")
    assert "STUB" not in log


def test_arguments_pass_through_unchanged(wine, project, elsewhere):
    python = wine.stub_python(project / ".venv" / "Scripts" / "python.exe")
    args = ["--older-than", "7d", "--batch-size=500", "--format", "json", "--database", "my db"]

    result, log = run_bat(wine, project, *args, cwd=elsewhere)

    assert result.returncode == 0, result
    argv = split_windows(stub_lines(log)["argv"])
    assert argv == [shown(python), "manage.py", "token_purge", *args]
    assert "command: python manage.py token_purge --older-than 7d --batch-size=500" in log


def test_no_arguments_means_token_purge_defaults(wine, project, elsewhere):
    python = wine.stub_python(project / "env" / "Scripts" / "python.exe")

    result, log = run_bat(wine, project, cwd=elsewhere)

    assert result.returncode == 0, result
    assert split_windows(stub_lines(log)["argv"]) == [shown(python), "manage.py", "token_purge"]


def test_runs_in_the_project_root_whatever_the_current_directory(wine, project, elsewhere):
    wine.stub_python(project / "env" / "Scripts" / "python.exe")

    result, log = run_bat(wine, project, cwd=elsewhere)

    assert result.returncode == 0, result
    assert stub_lines(log)["cwd"] == f'"{shown(project)}"'
    assert "STUB manage.py is here" in log


def test_log_folder_created_and_log_appended_as_utf8(wine, project, elsewhere):
    wine.stub_python(project / "env" / "Scripts" / "python.exe")
    assert not (project / "logs").exists()

    first, _ = run_bat(wine, project, "--dry-run", cwd=elsewhere, exit_code=0)
    second, log = run_bat(wine, project, cwd=elsewhere, exit_code=3)

    assert (first.returncode, second.returncode) == (0, 3)
    starts = [m.start() for m in re.finditer(r"^==== cleanup_tokens\.bat start ", log, re.M)]
    ends = [
        m.start()
        for m in re.finditer(r"^==== cleanup_tokens\.bat end .* exit code (\d+)", log, re.M)
    ]
    assert len(starts) == 2
    assert re.findall(r"^==== cleanup_tokens\.bat end .* exit code (\d+)\s*$", log, re.M) == [
        "0",
        "3",
    ]
    # The command's output (stdout and stderr) sits between its start and end lines.
    utf8 = [m.start() for m in re.finditer(re.escape(UTF8_LINE), log)]
    stderr = [m.start() for m in re.finditer("STUB to stderr", log)]
    assert len(utf8) == len(stderr) == 2
    for start, out, err, end in zip(starts, utf8, stderr, ends, strict=True):
        assert start < out < end
        assert start < err < end
    assert f'project root: "{shown(project)}"' in log
    lines = stub_lines(log)
    assert lines["PYTHONUTF8"] == "1"
    assert lines["PYTHONIOENCODING"] == "utf-8"


@pytest.mark.parametrize("code", [0, 1, 3])
def test_exit_code_is_token_purges(wine, project, elsewhere, code):
    wine.stub_python(project / "venv" / "Scripts" / "python.exe")

    result, log = run_bat(wine, project, cwd=elsewhere, exit_code=code)

    assert result.returncode == code, result
    assert log.rstrip().endswith(f"exit code {code}")
    assert f"cleanup_tokens: exit code {code}, log: ".encode() in result.stdout


def test_cmd_slash_c_on_a_path_with_spaces(wine, tmp_path, elsewhere):
    """The issue's recipe: ``cmd /c Z:\\...\\script.bat args`` (spaces, no & or parentheses)."""
    project = fake_project(tmp_path / "my project ёж", "cleanup_tokens.bat")
    python = wine.stub_python(project / "env" / "Scripts" / "python.exe")

    result = wine.cmd(
        windows_path(project / "scripts" / "cleanup_tokens.bat"),
        "--older-than",
        "1w2d",
        cwd=elsewhere,
        extra_env={"STUB_EXIT": "3"},
    )

    assert result.returncode == 3, result
    log = (project / "logs" / "cleanup_tokens.log").read_text(encoding="utf-8")
    argv = split_windows(stub_lines(log)["argv"])
    assert argv == [shown(python), "manage.py", "token_purge", "--older-than", "1w2d"]


def test_russian_locale_changes_nothing(wine, tmp_path, elsewhere, russian):
    """Wine in ru_RU: cp866 console, Russian messages, dd.mm.yyyy dates."""
    project = fake_project(tmp_path / "my project", "cleanup_tokens.bat")
    python = wine.stub_python(project / ".venv" / "Scripts" / "python.exe")

    result, log = run_bat(
        wine,
        project,
        "--older-than",
        "7d",
        cwd=elsewhere,
        exit_code=3,
        extra_env=russian,
    )

    assert result.returncode == 3, result
    assert split_windows(stub_lines(log)["argv"]) == [
        windows_path(python),
        "manage.py",
        "token_purge",
        "--older-than",
        "7d",
    ]
    assert UTF8_LINE in log
    assert log.rstrip().endswith("exit code 3")


def test_schtasks_line_from_the_hint_runs_the_wrapper(wine, tmp_path, elsewhere):
    """Paste the hint's schtasks line into cmd, then start what /TR says, as Task Scheduler.

    The path has spaces and parentheses (ASCII only: the line is read from a .bat file,
    which cmd decodes with the console code page; and Wine's cmd, unlike Windows', splits
    an external command's line at a caret-escaped &, so no & here).
    """
    project = fake_project(tmp_path / "my proj (x) v2", "cleanup_tokens.bat")
    wine.stub_python(project / "env" / "Scripts" / "python.exe")
    schtasks = wine.args_program(tmp_path / "recorder" / "schtasks.exe")
    schedule = parse_schedule("04:30", "week", "mon", "7d")
    hint = Project(
        root=PureWindowsPath(windows_path(project)),
        root_source="test",
        python="python.exe",
        in_venv=True,
        host="windows",
    )
    line = schtasks_create(hint, schedule)
    assert line.startswith("schtasks /Create ")
    paste = tmp_path / "paste.bat"
    pasted_line = f'@"{windows_path(schtasks)}"' + line[len("schtasks") :]
    paste.write_bytes((pasted_line + "\r\n").encode("ascii"))

    pasted = wine.run([windows_path(paste)], cwd=elsewhere)

    assert pasted.returncode == 0, pasted
    seen = js_args(pasted.stdout.decode("utf-8"))[1:]
    assert seen[:4] == ["/Create", "/TN", "tokenops cleanup_tokens", "/TR"]
    assert seen[5:] == ["/SC", "WEEKLY", "/D", "MON", "/ST", "04:30", "/F"]
    task_run = split_windows(seen[4])
    bat = windows_path(project / "scripts" / "cleanup_tokens.bat")
    assert task_run == [bat, "--older-than", "7d"]

    result, log = run_bat(wine, project, *task_run[1:], cwd=elsewhere, exit_code=3)

    assert result.returncode == 3, result
    argv = split_windows(stub_lines(log)["argv"])
    assert argv[1:] == ["manage.py", "token_purge", "--older-than", "7d"]


def test_stand_in_python_is_a_real_windows_program(wine, tmp_path, elsewhere):
    """Guards the harness: the launcher returns the recorder's exit code and arguments."""
    python = make_windows_exe(
        tmp_path / "p.exe",
        f"C:\\windows\\system32\\cmd.exe /c {windows_path(wine.stub_dir / 'record.bat')}",
    )

    result = wine.run(
        [windows_path(python), "a b", "c"], cwd=elsewhere, extra_env={"STUB_EXIT": "5"}
    )

    assert result.returncode == 5
    assert split_windows(stub_lines(result.stdout.decode("utf-8"))["argv"])[1:] == ["a b", "c"]


def test_register_task_action_runs_the_wrapper(wine, tmp_path, elsewhere):
    """The action register_task.ps1 builds: cmd.exe with its -Argument, read off the tree."""
    project = fake_project(tmp_path / "my project v3", "cleanup_tokens.bat")
    python = wine.stub_python(project / "env" / "Scripts" / "python.exe")
    argument = register_task_argument(
        (SCRIPTS / "register_task.ps1").read_bytes(),
        windows_path(project / "scripts" / "cleanup_tokens.bat"),
        ["--older-than 7d"],
    )
    task = tmp_path / "task.bat"
    task.write_bytes(f"@C:\\windows\\system32\\cmd.exe {argument}\r\n".encode("ascii"))

    result = wine.run([windows_path(task)], cwd=elsewhere, extra_env={"STUB_EXIT": "3"})

    assert result.returncode == 3, result
    log = (project / "logs" / "cleanup_tokens.log").read_text(encoding="utf-8")
    argv = split_windows(stub_lines(log)["argv"])
    assert argv == [windows_path(python), "manage.py", "token_purge", "--older-than", "7d"]


# --write-scripts' .bat: the python recorded in it, in the OEM code page, in a Russian Windows.
# A virtualenv of any name outside the project; both under folders with spaces, Cyrillic
# letters, & % and parentheses.
RECORDED_VENV = "Программы 100% (x86) & co/моё окружение"
PROJECTS = "мои проекты (2024)"


def written_bat(
    project: Path, recorded: Recorded, *, folder: Path | None = None, code_page: int = 866
) -> Path:
    """Write the wrappers as --write-scripts does, into ``folder`` (default: scripts/)."""
    folder = folder or project / "scripts"
    result = write_wrappers(folder, {"windows": recorded}, code_page=code_page)
    assert result.error() is None
    return folder / "cleanup_tokens.bat"


def run_in_russian_windows(
    wine: Wine, bat: Path, *args: str, cwd: Path, russian: dict[str, str], exit_code: int = 0
) -> subprocess.CompletedProcess[bytes]:
    """Start the .bat with a console in a Russian locale, as Task Scheduler does there."""
    return wine.run_in_console(
        [windows_path(bat), *args],
        cwd=cwd,
        extra_env={**russian, "STUB_EXIT": str(exit_code)},
    )


def test_console_code_page_is_russian_and_chcp_works(wine, elsewhere, russian):
    """Guards the harness: with a console, Wine's cmd is a Russian Windows' (cp866), and
    chcp 65001 takes, as on Windows; without one, it is not (code page 0)."""
    console = wine.run_in_console(["cmd", "/c", "chcp"], cwd=elsewhere, extra_env=russian)
    piped = wine.run(["cmd", "/c", "chcp"], cwd=elsewhere, extra_env=russian)

    assert console.returncode == 0, console
    assert "Активная кодовая страница: 866\r" in console.stdout.decode("utf-8")
    assert "Активная кодовая страница".encode("cp866") in piped.stdout
    assert piped.stdout.rstrip().endswith(b": 0")


def test_written_bat_runs_the_recorded_python(wine, tmp_path, elsewhere, russian):
    """The recorded python.exe starts, not the project's .venv, with manage.py token_purge
    and the arguments, in the project root; the log is UTF-8; the exit code comes back."""
    project = fake_project(tmp_path / PROJECTS / PROJECT_NAME)
    python = wine.stub_python(tmp_path / RECORDED_VENV / "Scripts" / "python.exe", "recorded")
    wine.stub_python(project / ".venv" / "Scripts" / "python.exe", "project-venv")
    bat = written_bat(project, Recorded(python=windows_path(python)))
    args = ["--older-than", "7d", "--batch-size=500", "--database", "my db", "a&b (c)"]

    result = run_in_russian_windows(wine, bat, *args, cwd=elsewhere, russian=russian, exit_code=3)

    assert result.returncode == 3, result
    log = (project / "logs" / "cleanup_tokens.log").read_bytes().decode("utf-8")
    lines = stub_lines(log)
    assert lines["exe"] == '"recorded"'
    tag, exe, *argv = split_windows(lines["argv"])
    assert (tag, argv) == ("recorded", ["manage.py", "token_purge", *args])
    # The stand-in echoes its path through Wine's cmd, which drops the percent sign.
    assert exe == windows_path(python).replace("%", "")
    assert lines["cwd"] == f'"{windows_path(project)}"'
    assert "STUB manage.py is here" in log
    assert f'project root: "{windows_path(project)}"' in log
    assert f'python: "{windows_path(python)}"' in log
    assert "not found" not in log
    assert UTF8_LINE in log
    assert log.rstrip().endswith("exit code 3")
    assert (lines["PYTHONUTF8"], lines["PYTHONIOENCODING"]) == ("1", "utf-8")


def test_written_bat_falls_back_when_the_recorded_python_is_gone(
    wine, tmp_path, elsewhere, russian
):
    project = fake_project(tmp_path / PROJECTS / PROJECT_NAME)
    gone = tmp_path / RECORDED_VENV / "Scripts" / "python.exe"
    wine.stub_python(project / "venv" / "Scripts" / "python.exe", "project-venv")
    bat = written_bat(project, Recorded(python=windows_path(gone)))

    result = run_in_russian_windows(wine, bat, "--dry-run", cwd=elsewhere, russian=russian)

    assert result.returncode == 0, result
    log = (project / "logs" / "cleanup_tokens.log").read_bytes().decode("utf-8")
    assert (
        f'recorded python "{windows_path(gone)}" not found, looking for env, .venv and venv '
        "in the project root"
    ) in log
    assert stub_lines(log)["exe"] == '"project-venv"'


def test_written_bat_in_another_folder_runs_in_the_recorded_root(
    wine, tmp_path, elsewhere, russian
):
    project = fake_project(tmp_path / PROJECTS / PROJECT_NAME)
    python = wine.stub_python(tmp_path / RECORDED_VENV / "Scripts" / "python.exe", "recorded")
    folder = tmp_path / "задания (ops) & co"
    bat = written_bat(
        project,
        Recorded(python=windows_path(python), root=windows_path(project)),
        folder=folder,
    )

    result = run_in_russian_windows(wine, bat, cwd=elsewhere, russian=russian, exit_code=1)

    assert result.returncode == 1, result
    log = (project / "logs" / "cleanup_tokens.log").read_bytes().decode("utf-8")
    assert stub_lines(log)["cwd"] == f'"{windows_path(project)}"'
    assert stub_lines(log)["exe"] == '"recorded"'
    assert f'python: "{windows_path(python)}"' in log
    assert not (folder.parent / "logs").exists()


def test_a_bat_written_in_utf8_misses_the_python_in_russian_windows(
    wine, tmp_path, elsewhere, russian
):
    """Guards the design: the same path written as UTF-8 is read as cp866 mojibake."""
    project = fake_project(tmp_path / PROJECTS / PROJECT_NAME)
    python = wine.stub_python(tmp_path / RECORDED_VENV / "Scripts" / "python.exe", "recorded")
    wine.stub_python(project / "env" / "Scripts" / "python.exe", "project-venv")
    bat = written_bat(project, Recorded(python=windows_path(python)), code_page=65001)

    result = run_in_russian_windows(wine, bat, cwd=elsewhere, russian=russian)

    assert result.returncode == 0, result
    log = (project / "logs" / "cleanup_tokens.log").read_bytes().decode("utf-8")
    assert stub_lines(log)["exe"] == '"project-venv"'
    assert "not found, looking for env, .venv and venv" in log
