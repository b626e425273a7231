"""tokenops.scheduling.project: the project as a scheduler sees it, and what would fail."""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from django.conf import settings
from django.test import override_settings

from tokenops.scheduling.project import (
    LOG_NAME,
    PLATFORMS,
    VENV_NAMES,
    WRAPPERS,
    Project,
    detect_project,
    host_platform,
    migration_warnings,
    readiness_warnings,
    wrapper_python,
)

BASE_DIR = Path(settings.BASE_DIR).resolve()


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_constants():
    assert PLATFORMS == ("windows", "linux", "celery")
    assert VENV_NAMES == ("env", ".venv", "venv")
    assert WRAPPERS == {"windows": "cleanup_tokens.bat", "linux": "cleanup_tokens.sh"}
    assert LOG_NAME == "cleanup_tokens.log"


def test_host_platform_is_this_machine():
    assert host_platform() == ("windows" if sys.platform == "win32" else "linux")


def test_detect_project_uses_base_dir():
    project = detect_project()

    assert project.root == BASE_DIR
    assert project.root_source == "settings.BASE_DIR"
    assert project.python == sys.executable
    assert project.in_venv == (sys.prefix != sys.base_prefix)
    assert project.host == host_platform()


def test_detect_project_falls_back_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with override_settings(BASE_DIR=None):
        project = detect_project()

    assert project.root == tmp_path.resolve()
    assert project.root_source == "the current directory (settings has no BASE_DIR)"


def test_paths_take_each_platforms_separators():
    project = Project(
        root=PureWindowsPath(r"C:\srv\my app"), root_source="t", python="p", in_venv=True,
        host="windows",
    )  # fmt: skip

    assert str(project.script("windows", "cleanup_tokens.bat")) == (
        r"C:\srv\my app\scripts\cleanup_tokens.bat"
    )
    assert str(project.log("windows")) == r"C:\srv\my app\logs\cleanup_tokens.log"
    assert str(project.script("linux", "cleanup_tokens.sh")) == (
        "C:/srv/my app/scripts/cleanup_tokens.sh"
    )
    posix = Project(PurePosixPath("/srv/app"), "t", "p", True, "linux")
    assert str(posix.log("linux")) == "/srv/app/logs/cleanup_tokens.log"
    assert str(posix.script("windows", "x.bat")) == "\\srv\\app\\scripts\\x.bat"


@pytest.mark.parametrize(
    ("platform", "relative"), [("linux", "bin/python"), ("windows", "Scripts/python.exe")]
)
def test_wrapper_python_is_the_first_venv_folder_with_a_python(tmp_path, platform, relative):
    assert wrapper_python(tmp_path, platform) is None
    (tmp_path / "env").mkdir()  # a folder without a python does not count
    assert wrapper_python(tmp_path, platform) is None
    venv = touch(tmp_path / "venv" / relative)
    assert wrapper_python(tmp_path, platform) == venv
    dot = touch(tmp_path / ".venv" / relative)
    assert wrapper_python(tmp_path, platform) == dot
    env = touch(tmp_path / "env" / relative)
    assert wrapper_python(tmp_path, platform) == env


def test_wrapper_python_looks_for_its_own_platforms_python(tmp_path):
    touch(tmp_path / ".venv" / "bin" / "python")

    assert wrapper_python(tmp_path, "windows") is None


@pytest.mark.django_db
def test_ready_project_has_no_warning(tmp_path):
    touch(tmp_path / "manage.py")
    touch(tmp_path / "scripts" / "cleanup_tokens.sh")
    touch(tmp_path / "scripts" / "cleanup_tokens.bat")
    touch(tmp_path / "env" / "bin" / "python")
    touch(tmp_path / "venv" / "Scripts" / "python.exe")
    project = Project(root=tmp_path, root_source="test", python="p", in_venv=True, host="linux")

    assert readiness_warnings(project, list(PLATFORMS), "default") == []


@pytest.mark.django_db
def test_warns_when_blacklist_app_missing():
    apps_without = [a for a in settings.INSTALLED_APPS if not a.endswith("token_blacklist")]
    project = Project(root=BASE_DIR, root_source="test", python="p", in_venv=True, host="linux")
    with override_settings(INSTALLED_APPS=apps_without):
        warnings = readiness_warnings(project, ["linux"], "default")
    assert any(
        "'rest_framework_simplejwt.token_blacklist' is not in INSTALLED_APPS" in w for w in warnings
    ), warnings


@pytest.mark.django_db
def test_warns_outside_a_virtualenv_and_when_scripts_miss_the_venv(tmp_path):
    (tmp_path / "manage.py").write_text("")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "cleanup_tokens.sh").write_text("")
    outside = Project(
        root=tmp_path, root_source="test", python="/usr/bin/python3", in_venv=False, host="linux"
    )
    inside = Project(
        root=tmp_path, root_source="test", python="/x/bin/python", in_venv=True, host="linux"
    )

    out_warnings = readiness_warnings(outside, ["linux"], "default")
    in_warnings = readiness_warnings(inside, ["linux"], "default")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    found_warnings = readiness_warnings(inside, ["linux"], "default")

    assert any(
        w.startswith("Not running inside a virtualenv (/usr/bin/python3)") for w in out_warnings
    )
    assert any("the scripts will not find it" in w for w in in_warnings)
    assert not any("virtualenv" in w for w in found_warnings), found_warnings


@pytest.mark.django_db
def test_warns_about_missing_manage_py_and_scripts(tmp_path):
    project = Project(root=tmp_path, root_source="test", python="p", in_venv=True, host="linux")

    warnings = readiness_warnings(project, ["windows", "linux"], "default")

    assert any(w.startswith(f"No manage.py in {tmp_path}") for w in warnings)
    assert any("cleanup_tokens.bat does not exist" in w for w in warnings)
    assert any("cleanup_tokens.sh does not exist" in w for w in warnings)


@pytest.mark.django_db
def test_celery_alone_needs_no_wrapper_script(tmp_path):
    touch(tmp_path / "manage.py")
    project = Project(root=tmp_path, root_source="test", python="p", in_venv=True, host="linux")

    assert readiness_warnings(project, ["celery"], "default") == []


@pytest.mark.django_db(databases=["default", "secondary"])
def test_migration_warnings():
    assert migration_warnings("default") == []
    assert migration_warnings("nope") == [
        "Unknown database alias 'nope' (configured: default, secondary)."
    ]
