"""From pip install to a scheduled run, as a user does it in a project of their own.

The wheel goes into a fresh virtualenv that is not env, .venv or venv and lives outside the
project; the project (not the example one) has simplejwt's blacklist and real tokens;
``token_schedule_hint --write-scripts`` writes the wrappers; cron's way of starting the
.sh (another current directory, a bare PATH without that virtualenv) purges what is
purgeable and keeps the rest.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import build_wheel, write_plain_settings

pytestmark = pytest.mark.slow

MANAGE_PY = """import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

# Run by the virtualenv's python in the project: real tokens through simplejwt, four of
# them aged (expired two days ago, one of those blacklisted), then the rows as JSON.
MAKE_TOKENS = """
import json
import os
from datetime import timedelta

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "shop_settings"
django.setup()
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

users = get_user_model()._default_manager
alice = users.create_user(username="alice", password="x")
bob = users.create_user(username="bob", password="x")
tokens = [RefreshToken.for_user(user) for user in (alice, bob, alice, bob, alice, bob, alice)]
tokens[0].blacklist()
tokens[4].blacklist()
aged = [str(token["jti"]) for token in tokens[3:]]
OutstandingToken.objects.filter(jti__in=aged).update(
    expires_at=timezone.now() - timedelta(days=2)
)
print(json.dumps({
    "kept": sorted(str(t["jti"]) for t in tokens[:3]),
    "aged": sorted(aged),
    "blacklisted": BlacklistedToken.objects.count(),
}))
"""


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300):
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def rows(database: Path) -> tuple[list[str], int]:
    """The outstanding tokens' jti, sorted, and how many blacklist rows there are."""
    with sqlite3.connect(database) as connection:
        jtis = [
            r[0] for r in connection.execute("SELECT jti FROM token_blacklist_outstandingtoken")
        ]
        (blacklisted,) = connection.execute(
            "SELECT COUNT(*) FROM token_blacklist_blacklistedtoken"
        ).fetchone()
    return sorted(jtis), blacklisted


def test_pip_install_write_scripts_then_cron_runs_the_purge(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    # A virtualenv named neither env, .venv nor venv, outside the project.
    venv = tmp_path / "virtualenvs" / "shop env (py3) & ёж"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    base_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PYTEST_", "VIRTUAL_ENV", "PYTHON"))
        and key not in ("DATABASE_URL", "PATH")
    }
    # pip finds the dependencies the way this machine is set up (its index or wheel folder).
    bare_path = "/usr/bin:/bin"
    env = {**base_env, "PATH": bare_path}
    install = run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path, env=env, timeout=600
    )
    assert install.returncode == 0, install.stderr

    project = tmp_path / "projects" / "my shop (v2) & co"
    project.mkdir(parents=True)
    database = project / "shop.sqlite3"
    settings = write_plain_settings(project, "shop_settings", str(database))
    with (project / f"{settings}.py").open("a", encoding="utf-8") as out:
        out.write(f"BASE_DIR = {str(project)!r}\n")
    (project / "manage.py").write_text(MANAGE_PY, encoding="utf-8")

    def manage(*args: str):
        return run([str(python), "manage.py", *args], cwd=project, env=env)

    migrate = manage("migrate", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr
    made = run([str(python), "-c", MAKE_TOKENS], cwd=project, env=env)
    assert made.returncode == 0, made.stderr
    tokens = json.loads(made.stdout)
    assert rows(database) == (sorted(tokens["kept"] + tokens["aged"]), 2)

    written = manage("token_schedule_hint", "--write-scripts")
    again = manage("token_schedule_hint", "--write-scripts")
    hint = manage("token_schedule_hint")

    scripts = project / "scripts"
    sh = scripts / "cleanup_tokens.sh"
    assert (written.returncode, written.stderr) == (0, "")
    assert f"written: {sh}  (runs {python})\n" in written.stdout
    assert [line.split(": ")[0] for line in written.stdout.splitlines()] == [
        "written", "written", "written", "written", "Next"
    ]  # fmt: skip
    assert [line.split(": ")[0] for line in again.stdout.splitlines()] == [
        "up to date", "up to date", "up to date", "up to date", "Next"
    ]  # fmt: skip
    assert os.access(sh, os.X_OK)
    assert sorted(p.name for p in scripts.iterdir()) == [
        "cleanup_tokens.bat", "cleanup_tokens.ps1", "cleanup_tokens.sh", "register_task.ps1"
    ]  # fmt: skip
    # The hint now names the written script, which records the virtualenv: no warning.
    assert (hint.returncode, hint.stderr) == (0, "")
    assert f"cleanup_tokens.sh will use: {python}  (recorded by --write-scripts)" in hint.stdout
    assert f"0 3 * * * '{sh}'" in hint.stdout

    # As cron starts it: by its path, from elsewhere, the virtualenv nowhere on PATH.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cron_env = {"PATH": bare_path, "HOME": str(elsewhere), "LANG": "C"}
    assert str(venv) not in cron_env["PATH"]
    purge = run([str(sh), "--format", "json"], cwd=elsewhere, env=cron_env)

    assert purge.returncode == 0, purge
    assert purge.stdout == ""  # cron would mail anything printed
    log = (project / "logs" / "cleanup_tokens.log").read_text(encoding="utf-8")
    assert f"project root: {project}\n" in log
    assert f"python: {python}\n" in log
    assert "not found" not in log and "python on PATH" not in log
    output = log.split("command: python manage.py token_purge --format json\n")[1]
    report = json.loads(output.split("==== cleanup_tokens.sh end")[0])
    assert report["deleted"]["outstanding"] == 4
    assert report["deleted"]["blacklisted"] == 1
    assert log.rstrip().endswith("exit code 0")
    assert rows(database) == (tokens["kept"], 1)

    # The virtualenv gone: the script says so and falls back to today's search.
    venv.rename(venv.with_name("moved away"))
    gone = run([str(sh), "--dry-run"], cwd=elsewhere, env=cron_env)
    log = (project / "logs" / "cleanup_tokens.log").read_text(encoding="utf-8")
    assert f"recorded python {python} not found, looking for env, .venv and venv" in log
    assert "no venv found (looked for env, .venv and venv in the project root), " in log
    assert gone.returncode != 0  # no python on this bare PATH has Django
