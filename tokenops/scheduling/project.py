"""The project as a scheduler will see it: its root, its python, and what would fail.

Nothing here imports Celery: the hints must work on a machine without it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from django.apps import apps
from django.conf import settings
from django.db import connections

from ..checks import BLACKLIST_APP, pending_migrations
from ..errors import TokenopsError, unknown_alias

PLATFORMS = ("windows", "linux", "celery")
VENV_NAMES = ("env", ".venv", "venv")
LOG_NAME = "cleanup_tokens.log"
# The wrapper each platform's scheduler starts (scripts/ in the project root).
WRAPPERS = {"windows": "cleanup_tokens.bat", "linux": "cleanup_tokens.sh"}


@dataclass(frozen=True)
class Project:
    """Where the project is, and which python runs it, as the wrappers will see it."""

    root: PurePath
    root_source: str
    python: str
    in_venv: bool
    host: str

    def flavoured(self, platform: str) -> PurePath:
        """The root as a path of ``platform`` (it differs from the host's only in separators)."""
        if platform == "windows":
            return PureWindowsPath(self.root)
        return PurePosixPath(self.root.as_posix())

    def script(self, platform: str, name: str) -> PurePath:
        return self.flavoured(platform) / "scripts" / name

    def log(self, platform: str) -> PurePath:
        return self.flavoured(platform) / "logs" / LOG_NAME


def host_platform() -> str:
    return "windows" if sys.platform == "win32" else "linux"


def detect_project() -> Project:
    """The example project's root is where manage.py is: settings.BASE_DIR, else the cwd."""
    base_dir = getattr(settings, "BASE_DIR", None)
    if base_dir:
        root, source = Path(base_dir).resolve(), "settings.BASE_DIR"
    else:
        root, source = Path.cwd().resolve(), "the current directory (settings has no BASE_DIR)"
    return Project(
        root=root,
        root_source=source,
        python=sys.executable,
        in_venv=sys.prefix != sys.base_prefix,
        host=host_platform(),
    )


def wrapper_python(root: Path, platform: str) -> Path | None:
    """The python the wrapper scripts will pick: the first venv folder that has one."""
    relative = ("Scripts", "python.exe") if platform == "windows" else ("bin", "python")
    for name in VENV_NAMES:
        candidate = root.joinpath(name, *relative)
        if candidate.is_file():
            return candidate
    return None


def readiness_warnings(project: Project, platforms: list[str], database: str) -> list[str]:
    """What would make a scheduled run fail, one line each (empty: nothing found)."""
    warnings: list[str] = []
    root = Path(project.root)
    wrappers = [p for p in platforms if p in WRAPPERS]
    if not (root / "manage.py").is_file():
        warnings.append(
            f"No manage.py in {root} (from {project.root_source}): the scripts run "
            "'python manage.py token_purge' from the parent of their scripts folder."
        )
    for platform in wrappers:
        script = root / "scripts" / WRAPPERS[platform]
        if not script.is_file():
            warnings.append(
                f"{script} does not exist: copy tokenops' scripts/ folder into the project root."
            )
    if not apps.is_installed(BLACKLIST_APP):
        warnings.append(
            f"'{BLACKLIST_APP}' is not in INSTALLED_APPS: every scheduled token_purge "
            "would fail. Add it and run 'python manage.py migrate'."
        )
    warnings += migration_warnings(database)
    if not project.in_venv:
        warnings.append(
            f"Not running inside a virtualenv ({project.python}): the scheduled run uses "
            "whatever python is first on PATH, which may lack Django and tokenops."
        )
    if project.in_venv and any(wrapper_python(root, p) is None for p in wrappers):
        warnings.append(
            f"Your virtualenv ({sys.prefix}) is not env, .venv or venv in {root}: "
            "the scripts will not find it and use python on PATH instead; create the "
            "venv there (python -m venv .venv) or link it."
        )
    return warnings


def migration_warnings(database: str) -> list[str]:
    if database not in connections:
        return [unknown_alias(database)]
    try:
        pending = pending_migrations(database)
    except TokenopsError as exc:
        return [str(exc)]
    if not pending:
        return []
    apps_pending = sorted({label.split(".")[0] for label in pending})
    return [
        f"{len(pending)} migration(s) not applied on database {database!r} "
        f"({', '.join(apps_pending)}): run 'python manage.py migrate --database {database}'."
    ]
