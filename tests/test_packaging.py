"""`pip install .` gives a working app that does not need the example project."""

import os
import subprocess
import sys
import zipfile

import pytest

from tests.utils import ROOT, write_plain_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("tokenops-*.whl")
    return built


def test_wheel_holds_the_app_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "tokenops/management/commands/token_purge.py" in names
    assert "tokenops/management/commands/token_report.py" in names
    assert not [n for n in names if n.startswith(("my_bathhouse_backend/", "tests/"))]


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
