"""scripts/cleanup_tokens.sh, run for real: with a stand-in python, then with the real one."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slow.stand_in import SCRIPTS, UTF8_LINE, fake_project, stub_lines
from tests.utils import PYTHON, ROOT, project_env, run_manage, sqlite_url
from tokenops.scheduling.hints import cron_line
from tokenops.scheduling.project import Project
from tokenops.scheduling.schedule import parse_schedule
from tokenops.scheduling.wrappers import write_project_wrappers

pytestmark = pytest.mark.slow

PROJECT_NAME = "проект ёж (demo) & co's"

STUB_PYTHON = f"""#!/bin/sh
echo "STUB exe=[$0]"
echo "STUB cwd=[$(pwd)]"
if [ -f manage.py ]; then echo "STUB manage.py is here"; fi
for arg in "$@"; do echo "STUB arg=[$arg]"; done
echo "STUB PYTHONUTF8=[$PYTHONUTF8]"
echo "STUB PYTHONIOENCODING=[$PYTHONIOENCODING]"
echo '{UTF8_LINE}'
echo "STUB to stderr" >&2
exit "${{STUB_EXIT:-0}}"
"""


def stub_python(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STUB_PYTHON, encoding="utf-8")
    path.chmod(0o755)
    return path


def tools_only_path(tmp_path: Path) -> str:
    """A PATH with the few tools the script needs and no python at all."""
    bin_dir = tmp_path / "tools"
    bin_dir.mkdir()
    for tool in ("dirname", "mkdir", "date"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return fake_project(tmp_path / PROJECT_NAME, "cleanup_tokens.sh")


def run_sh(
    project: Path,
    *args: str,
    cwd: Path,
    exit_code: int = 0,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """Start the script as cron does: by its path, no terminal, a small environment."""
    base = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C"}
    result = subprocess.run(
        [str(project / "scripts" / "cleanup_tokens.sh"), *args],
        cwd=cwd,
        env={**base, "STUB_EXIT": str(exit_code), **(env or {})},
        capture_output=True,
        timeout=60,
        check=False,
    )
    log = project / "logs" / "cleanup_tokens.log"
    assert log.is_file(), result
    return result, log.read_bytes().decode("utf-8")


def stub_args(log: str) -> list[str]:
    return re.findall(r"^STUB arg=\[(.*)\]$", log, re.MULTILINE)


@pytest.mark.parametrize("venv", ["env", ".venv", "venv"])
def test_each_venv_folder_name_is_found(project, elsewhere, venv):
    python = stub_python(project / venv / "bin" / "python")

    result, log = run_sh(project, "--dry-run", cwd=elsewhere)

    assert result.returncode == 0, result
    assert stub_lines(log)["exe"] == str(python)
    assert f"python: {python}\n" in log
    assert "using python on PATH" not in log


@pytest.mark.parametrize(
    ("folders", "chosen"),
    [
        (["env", ".venv", "venv"], "env"),
        ([".venv", "venv"], ".venv"),
        (["venv", "env-without-python"], "venv"),
    ],
)
def test_first_venv_with_a_python_wins(project, elsewhere, folders, chosen):
    for folder in folders:
        if folder == "env-without-python":
            (project / "env" / "bin").mkdir(parents=True)
        else:
            stub_python(project / folder / "bin" / "python")

    result, log = run_sh(project, cwd=elsewhere)

    assert result.returncode == 0, result
    assert stub_lines(log)["exe"] == str(project / chosen / "bin" / "python")


def test_without_a_venv_python_on_path_is_used_and_said(project, elsewhere, tmp_path):
    on_path = stub_python(tmp_path / "bin dir" / "python3")

    result, log = run_sh(
        project,
        cwd=elsewhere,
        exit_code=1,
        env={"PATH": f"{on_path.parent}:{tools_only_path(tmp_path)}"},
    )

    assert result.returncode == 1, result
    assert "no venv found (looked for env, .venv and venv in the project root), " in log
    assert "using python on PATH" in log
    assert stub_lines(log)["exe"] == str(on_path)


def test_without_any_python_the_log_says_so_and_the_run_fails(project, elsewhere, tmp_path):
    result, log = run_sh(project, cwd=elsewhere, env={"PATH": tools_only_path(tmp_path)})

    assert result.returncode == 127, result
    assert "no python3 or python on PATH" in log
    assert log.rstrip().endswith("exit code 127")
    assert result.stderr.decode().startswith("cleanup_tokens: no python found, see ")


def test_arguments_pass_through_unchanged(project, elsewhere):
    stub_python(project / ".venv" / "bin" / "python")
    args = ["--older-than", "7d", "--batch-size=500", "--database", "my db", "$HOME", "*"]

    result, log = run_sh(project, *args, cwd=elsewhere)

    assert result.returncode == 0, result
    assert stub_args(log) == ["manage.py", "token_purge", *args]


def test_runs_in_the_project_root_whatever_the_current_directory(project, elsewhere):
    stub_python(project / "env" / "bin" / "python")

    result, log = run_sh(project, cwd=elsewhere)

    assert result.returncode == 0, result
    assert stub_lines(log)["cwd"] == str(project)
    assert "STUB manage.py is here" in log


def test_log_folder_created_and_log_appended_as_utf8(project, elsewhere):
    stub_python(project / "env" / "bin" / "python")
    assert not (project / "logs").exists()

    first, _ = run_sh(project, "--dry-run", cwd=elsewhere, exit_code=0)
    second, log = run_sh(project, cwd=elsewhere, exit_code=3)

    assert (first.returncode, second.returncode) == (0, 3)
    # Nothing on stdout without a terminal: cron would mail it.
    assert first.stdout == second.stdout == b""
    start = r"^==== cleanup_tokens\.sh start \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$"
    assert len(re.findall(start, log, re.M)) == 2
    ends = re.findall(r"^==== cleanup_tokens\.sh end .* exit code (\d+)$", log, re.M)
    assert ends == ["0", "3"]
    assert log.count(UTF8_LINE + "\n") == 2
    assert log.count("STUB to stderr\n") == 2
    assert f"project root: {project}\n" in log
    assert stub_lines(log)["PYTHONUTF8"] == "1"
    assert stub_lines(log)["PYTHONIOENCODING"] == "utf-8"


@pytest.mark.parametrize("code", [0, 1, 3])
def test_exit_code_is_token_purges(project, elsewhere, code):
    stub_python(project / "venv" / "bin" / "python")

    result, log = run_sh(project, cwd=elsewhere, exit_code=code)

    assert result.returncode == code, result
    assert log.rstrip().endswith(f"exit code {code}")


def test_crontab_line_from_the_hint_runs_the_wrapper(project, elsewhere):
    """The hint's crontab command, run as cron runs it: /bin/sh -c, % as cron leaves it."""
    stub_python(project / "env" / "bin" / "python")
    hint = Project(root=project, root_source="test", python=PYTHON, in_venv=True, host="linux")
    line = cron_line(hint, parse_schedule("04:30", "week", "mon", "7d"))
    minute, hour, dom, month, dow, command = line.split(None, 5)
    assert (minute, hour, dom, month, dow) == ("30", "4", "*", "*", "1")
    assert shlex.split(command) == [
        str(project / "scripts" / "cleanup_tokens.sh"),
        "--older-than",
        "7d",
    ]

    result = subprocess.run(
        ["/bin/sh", "-c", command.replace("\\%", "%")],
        cwd=elsewhere,
        env={"PATH": os.environ["PATH"], "STUB_EXIT": "3"},
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 3, result
    log = (project / "logs" / "cleanup_tokens.log").read_text(encoding="utf-8")
    assert stub_args(log) == ["manage.py", "token_purge", "--older-than", "7d"]


# A virtualenv of any name, outside the project: spaces, Cyrillic, & % ( ) and a quote.
ELSEWHERE_VENV = "venvs 100% (x) & it's ёж/my env"


def written_project(tmp_path: Path, python: Path, scripts: Path | None = None) -> Path:
    """A stand-in project whose wrappers --write-scripts wrote, recording ``python``."""
    project = fake_project(tmp_path / PROJECT_NAME)
    hint = Project(project, "test", str(python), True, "linux", scripts)
    result = write_project_wrappers(hint, code_page=866)
    assert result.error() is None
    return project


def test_written_script_runs_the_recorded_python(tmp_path, elsewhere):
    """The python that wrote the script runs, wherever it is, though a .venv is there too
    and no python is on PATH."""
    python = stub_python(tmp_path / ELSEWHERE_VENV / "bin" / "python")
    project = written_project(tmp_path, python)
    stub_python(project / ".venv" / "bin" / "python")
    args = ["--older-than", "7d", "--database", "my db", "$HOME", "*"]

    result, log = run_sh(
        project, *args, cwd=elsewhere, exit_code=3, env={"PATH": tools_only_path(tmp_path)}
    )

    assert result.returncode == 3, result
    assert stub_lines(log)["exe"] == str(python)
    assert f"python: {python}\n" in log
    assert stub_args(log) == ["manage.py", "token_purge", *args]
    assert stub_lines(log)["cwd"] == str(project)
    assert "STUB manage.py is here" in log
    assert "not found" not in log
    assert log.rstrip().endswith("exit code 3")


def test_written_script_falls_back_when_the_recorded_python_is_gone(tmp_path, elsewhere):
    python = stub_python(tmp_path / ELSEWHERE_VENV / "bin" / "python")
    project = written_project(tmp_path, python)
    venv = stub_python(project / "venv" / "bin" / "python")
    python.unlink()

    result, log = run_sh(project, cwd=elsewhere, env={"PATH": tools_only_path(tmp_path)})

    assert result.returncode == 0, result
    assert (
        f"recorded python {python} not found, looking for env, .venv and venv in the project root\n"
    ) in log
    assert stub_lines(log)["exe"] == str(venv)


def test_written_script_falls_back_to_path_and_says_both(tmp_path, elsewhere):
    python = tmp_path / "gone" / "bin" / "python"
    project = written_project(tmp_path, python)
    on_path = stub_python(tmp_path / "bin dir" / "python3")

    result, log = run_sh(
        project, cwd=elsewhere, env={"PATH": f"{on_path.parent}:{tools_only_path(tmp_path)}"}
    )

    assert result.returncode == 0, result
    assert f"recorded python {python} not found" in log
    assert "no venv found (looked for env, .venv and venv in the project root), " in log
    assert stub_lines(log)["exe"] == str(on_path)


def test_written_script_in_another_folder_runs_in_the_recorded_root(tmp_path, elsewhere):
    python = stub_python(tmp_path / ELSEWHERE_VENV / "bin" / "python")
    scripts = tmp_path / "ops (1)" / "tokenops & co"
    project = written_project(tmp_path, python, scripts)

    result = subprocess.run(
        [str(scripts / "cleanup_tokens.sh"), "--dry-run"],
        cwd=elsewhere,
        env={"PATH": tools_only_path(tmp_path)},
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result
    log = (project / "logs" / "cleanup_tokens.log").read_text(encoding="utf-8")
    assert f"project root: {project}\n" in log
    assert stub_lines(log)["cwd"] == str(project)
    assert stub_args(log) == ["manage.py", "token_purge", "--dry-run"]
    assert not (scripts.parent / "logs").exists()


def copy_example_project(target: Path) -> Path:
    """The repository's example project and tokenops, with .venv being this test's python,
    and the wrapper templates copied by hand into scripts/ (no python recorded)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "logs", "db.sqlite3*")
    target.mkdir()
    shutil.copy2(ROOT / "manage.py", target / "manage.py")
    for folder in ("my_bathhouse_backend", "tokenops"):
        shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    shutil.copytree(SCRIPTS, target / "scripts")
    if sys.prefix != sys.base_prefix:
        (target / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    else:
        (target / ".venv" / "bin").mkdir(parents=True)
        (target / ".venv" / "bin" / "python").symlink_to(PYTHON)
    return target


def report(database: str) -> dict:
    done = run_manage("token_report", "--format", "json", env=project_env(database))
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def test_real_purge_through_the_script(tmp_path, elsewhere):
    """No stand-in: the script runs the project's real token_purge on a real SQLite file."""
    project = copy_example_project(tmp_path / "my project ёж")
    database = sqlite_url(tmp_path / "tokens.sqlite3")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": database}
    # Set up and read the database with this checkout's manage.py; the script then runs
    # the copy's own.
    for args in (
        ("migrate", "-v", "0"),
        ("seed_demo_tokens", "--count", "60", "--users", "5", "--days", "40"),
    ):
        done = run_manage(*args, env=project_env(database))
        assert done.returncode == 0, done
    before = report(database)
    assert before["outstanding"]["purgeable"] > 0, before

    result = subprocess.run(
        [str(project / "scripts" / "cleanup_tokens.sh"), "--format", "json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result
    log = (project / "logs" / "cleanup_tokens.log").read_text(encoding="utf-8")
    assert f"python: {project / '.venv' / 'bin' / 'python'}\n" in log
    output = log.split("command: python manage.py token_purge --format json\n")[1]
    purged = json.loads(output.split("==== cleanup_tokens.sh end")[0])
    assert purged["deleted"]["outstanding"] == before["outstanding"]["purgeable"]
    assert log.rstrip().endswith("exit code 0")
    after = report(database)
    assert after["outstanding"]["purgeable"] == 0, after
    assert after["outstanding"]["total"] == (
        before["outstanding"]["total"] - before["outstanding"]["purgeable"]
    )


def test_real_failure_is_logged_and_returned(tmp_path, elsewhere):
    """A bad option: token_purge's one-line error lands in the log, its code is returned."""
    project = copy_example_project(tmp_path / "my project")
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": sqlite_url(tmp_path / "t.sqlite3")}

    result = subprocess.run(
        [str(project / "scripts" / "cleanup_tokens.sh"), "--older-than", "soon"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 2, result
    log = (project / "logs" / "cleanup_tokens.log").read_text(encoding="utf-8")
    assert "token_purge: error: argument --older-than: Invalid duration 'soon'" in log
    assert "Traceback" not in log
    assert log.rstrip().endswith("exit code 2")
