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
from .wrapper_files import BY_NAME, Recorded, read_recorded

PLATFORMS = ("windows", "linux", "celery")
VENV_NAMES = ("env", ".venv", "venv")
LOG_NAME = "cleanup_tokens.log"
# The wrapper each platform's scheduler starts (scripts/ in the project root).
WRAPPERS = {"windows": "cleanup_tokens.bat", "linux": "cleanup_tokens.sh"}
WRITE_SCRIPTS = "python manage.py token_schedule_hint --write-scripts"


@dataclass(frozen=True)
class Project:
    """Where the project is, and which python runs it, as the wrappers will see it."""

    root: PurePath
    root_source: str
    python: str
    in_venv: bool
    host: str
    # Where the wrappers are (--scripts-dir); None: scripts/ in the root.
    scripts: PurePath | None = None

    def flavoured(self, platform: str, path: PurePath | None = None) -> PurePath:
        """The root (or ``path``) as a path of ``platform``: only the separators differ."""
        path = self.root if path is None else path
        if platform == "windows":
            return PureWindowsPath(path)
        return PurePosixPath(path.as_posix())

    @property
    def scripts_folder(self) -> PurePath:
        return self.root / "scripts" if self.scripts is None else self.scripts

    def script(self, platform: str, name: str) -> PurePath:
        return self.flavoured(platform, self.scripts_folder) / name

    def log(self, platform: str) -> PurePath:
        return self.flavoured(platform) / "logs" / LOG_NAME


def host_platform() -> str:
    return "windows" if sys.platform == "win32" else "linux"


def detect_project(scripts_dir: str | Path | None = None) -> Project:
    """The example project's root is where manage.py is: settings.BASE_DIR, else the cwd.

    ``scripts_dir`` (--scripts-dir, relative to the current directory) is where the
    wrappers are; by default scripts/ in the root.
    """
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
        scripts=None if scripts_dir is None else Path(scripts_dir).resolve(),
    )


def wrapper_python(root: Path, platform: str) -> Path | None:
    """The python the wrapper scripts will pick: the first venv folder that has one."""
    relative = ("Scripts", "python.exe") if platform == "windows" else ("bin", "python")
    for name in VENV_NAMES:
        candidate = root.joinpath(name, *relative)
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class WrapperPython:
    """Which python a project's wrapper will start, and what --write-scripts recorded."""

    path: Path | None  # None: python on PATH
    recorded: str | None  # the python the wrapper records (None: a template, or no file)

    @property
    def gone(self) -> bool:
        return self.recorded is not None and self.path != Path(self.recorded)

    def described(self) -> str:
        if self.path is None:
            found = "python on PATH (no env, .venv or venv with a python in the project root)"
        else:
            found = str(self.path)
        if self.gone:
            return f"{found}  (its recorded python {self.recorded} is gone)"
        if self.recorded is not None:
            return f"{found}  (recorded by --write-scripts)"
        return found


def recorded_in(script: Path) -> Recorded:
    """What the wrapper file ``script`` records (nothing when it is missing or unreadable)."""
    try:
        data = script.read_bytes()
    except OSError:
        return Recorded()
    return read_recorded(BY_NAME[script.name], data)


def wrapper_interpreter(project: Project, platform: str) -> WrapperPython:
    """The python ``platform``'s wrapper in this project will start, as the wrapper picks it."""
    recorded = recorded_in(Path(project.scripts_folder) / WRAPPERS[platform]).python
    if recorded is not None and Path(recorded).is_file():
        return WrapperPython(Path(recorded), recorded)
    return WrapperPython(wrapper_python(Path(project.root), platform), recorded)


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
        script = Path(project.scripts_folder) / WRAPPERS[platform]
        if not script.is_file():
            warnings.append(f"{script} does not exist: run '{WRITE_SCRIPTS}' to write it.")
    pythons = {platform: wrapper_interpreter(project, platform) for platform in wrappers}
    for platform, python in pythons.items():
        if python.gone:
            warnings.append(
                f"{WRAPPERS[platform]} runs {python.recorded}, which no longer exists: run "
                f"'{WRITE_SCRIPTS}' again with the python that should run the purge."
            )
    on_path = any(python.path is None for python in pythons.values())
    if not apps.is_installed(BLACKLIST_APP):
        warnings.append(
            f"'{BLACKLIST_APP}' is not in INSTALLED_APPS: every scheduled token_purge "
            "would fail. Add it and run 'python manage.py migrate'."
        )
    warnings += migration_warnings(database)
    if not project.in_venv and on_path:
        warnings.append(
            f"Not running inside a virtualenv ({project.python}): the scheduled run uses "
            "whatever python is first on PATH, which may lack Django and tokenops; run "
            f"'{WRITE_SCRIPTS}' to record this python in the scripts."
        )
    if project.in_venv and on_path:
        warnings.append(
            f"Your virtualenv ({sys.prefix}) is not env, .venv or venv in {root}: "
            "the scripts will not find it and use python on PATH instead; run "
            f"'{WRITE_SCRIPTS}' to record this python in them."
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
