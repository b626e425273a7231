"""`pip install .` gives a working app that does not need the example project."""

import os
import subprocess
import sys
import zipfile

import pytest

from tests.utils import ROOT, build_wheel, write_plain_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_holds_the_app_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "tokenops/management/commands/token_purge.py" in names
    assert "tokenops/management/commands/token_report.py" in names
    assert not [n for n in names if n.startswith(("my_bathhouse_backend/", "tests/"))]
    assert not [n for n in names if n.startswith("scripts/") or n.endswith("bench_purge.py")]


def test_wheel_holds_the_four_wrappers_byte_for_byte(wheel):
    """CRLF kept in the .bat and .ps1 (cmd and PowerShell 5.1 want it), LF in the .sh;
    the same bytes as the one copy in the source tree, the .sh executable."""
    archive = zipfile.ZipFile(wheel)
    folder = "tokenops/scheduling/scripts/"
    wrappers = sorted(n[len(folder) :] for n in archive.namelist() if n.startswith(folder))
    assert wrappers == [
        "cleanup_tokens.bat", "cleanup_tokens.ps1", "cleanup_tokens.sh", "register_task.ps1"
    ]  # fmt: skip
    for name in wrappers:
        data = archive.read(folder + name)
        assert data == (ROOT / "tokenops" / "scheduling" / "scripts" / name).read_bytes()
        if name.endswith(".sh"):
            assert b"\r" not in data
            assert archive.getinfo(folder + name).external_attr >> 16 & 0o111
        else:
            assert data.count(b"\n") == data.count(b"\r\n") > 50, name


def test_installed_wheel_runs_in_another_project(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    project = tmp_path / "own project"
    project.mkdir()
    module = write_plain_settings(project, "own_settings", str(project / "own.sqlite3"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(project)]),
        "DJANGO_SETTINGS_MODULE": module,
    }
    env.pop("DATABASE_URL", None)

    def admin(*args):
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import tokenops; print(tokenops.__file__)"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(site))
    assert admin("migrate", "-v", "0").returncode == 0
    report = admin("token_report", "--format", "csv")
    assert (report.returncode, report.stderr) == (0, "")
    assert report.stdout.splitlines() == [
        "tokens,total,active,expired,purgeable",
        "outstanding,0,0,0,0",
        "blacklisted,0,0,0,0",
    ]
    purge = admin("token_purge", "--dry-run")
    assert purge.returncode == 0
    assert purge.stdout.startswith("Dry run: nothing was deleted.")
