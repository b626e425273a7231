"""Celery is an optional extra: tokenops works in an interpreter where it is really absent.

The subprocess runs with ``python -S`` (no site-packages) and a directory holding only
tokenops' own dependencies, so ``celery``, ``kombu`` and ``django_celery_beat`` cannot
be imported at all (nothing is patched or blocked).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.utils import ROOT, write_plain_settings

pytestmark = pytest.mark.slow

# tokenops' core dependencies and theirs (pyproject.toml), nothing of Celery.
CORE = ("django", "asgiref", "sqlparse", "rest_framework", "rest_framework_simplejwt", "jwt")
CORE += ("tabulate", "tqdm")


SCRIPT = """
import json, sys

import django

django.setup()
from django.core.management import call_command

import tokenops
from tokenops.scheduling import beat
from tokenops.scheduling.schedule import parse_schedule
from tokenops.errors import TokenopsError

call_command("migrate", verbosity=0)
call_command("token_purge", "--dry-run", "--format", "json")
call_command("token_report", "--format", "json")
outcome = {}
try:
    beat.install_periodic_task(parse_schedule("03:00", "day", older_than="7d"))
except TokenopsError as exc:
    outcome["install"] = str(exc)
try:
    import tokenops.tasks
except ImportError as exc:
    outcome["tasks"] = str(exc)
outcome["loaded"] = sorted(
    name for name in ("celery", "kombu", "django_celery_beat") if name in sys.modules
)
print("OUTCOME " + json.dumps(outcome))
"""


def link_packages(target: Path) -> None:
    """Put only the core packages on the path, as symlinks to the installed ones."""
    for name in CORE:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        source = Path(spec.origin)
        if spec.submodule_search_locations:
            source = source.parent
        (target / source.name).symlink_to(source, target_is_directory=source.is_dir())


def test_tokenops_works_without_celery_installed(tmp_path):
    packages = tmp_path / "packages"
    packages.mkdir()
    link_packages(packages)
    module = write_plain_settings(packages, "nocelery_settings", str(tmp_path / "db.sqlite3"))
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(packages), str(ROOT)]),
        DJANGO_SETTINGS_MODULE=module,
    )

    done = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(SCRIPT)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report_line = next(line for line in done.stdout.splitlines() if line.startswith("OUTCOME "))
    outcome = json.loads(report_line.removeprefix("OUTCOME "))
    assert outcome == {
        "install": (
            "django-celery-beat is not installed: pip install 'tokenops[celery]', add "
            "'django_celery_beat' to INSTALLED_APPS and run 'python manage.py migrate'."
        ),
        "tasks": "tokenops.tasks needs Celery: pip install 'tokenops[celery]'.",
        "loaded": [],
    }
    assert '"dry_run": true' in done.stdout
