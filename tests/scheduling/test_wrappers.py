"""tokenops.scheduling.wrapper_files and .wrappers: the wrappers rendered with a recorded
python and root, read back, and written into a folder (statuses, run bit, refusals)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest
from django.test import override_settings

from tests.slow.stand_in import SCRIPTS
from tests.utils import ROOT
from tokenops.errors import TokenopsError
from tokenops.scheduling.project import (
    Project,
    detect_project,
    readiness_warnings,
    wrapper_interpreter,
)
from tokenops.scheduling.wrapper_files import (
    BOM,
    BY_NAME,
    EARLIER_TEMPLATES,
    WRAPPERS,
    Recorded,
    codec_of,
    is_pristine,
    oem_code_page,
    read_recorded,
    render,
)
from tokenops.scheduling.wrappers import (
    KEPT,
    REPLACED,
    UP_TO_DATE,
    WRITTEN,
    write_project_wrappers,
    write_wrappers,
)

NAMES = ["cleanup_tokens.bat", "cleanup_tokens.ps1", "register_task.ps1", "cleanup_tokens.sh"]
# The last commit with the templates in scripts/, as earlier releases shipped them.
EARLIER_COMMIT = "9c3984f"
WIN_PYTHON = r"C:\Программы (x86) & 100% ёж\моё окружение\Scripts\python.exe"
WIN_ROOT = r"D:\проекты\it's (my) & co"
SH_PYTHON = "/srv/venvs/it's (x) & 100% ёж/bin/python"


def statuses(result) -> dict[str, str]:
    return {f.path.name: f.status for f in result.files}


def test_the_four_templates_ship_as_package_data():
    assert [w.name for w in WRAPPERS] == NAMES
    for wrapper in WRAPPERS:
        assert wrapper.template() == (SCRIPTS / wrapper.name).read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_each_template_has_one_empty_line_per_recorded_value(name):
    wrapper = BY_NAME[name]
    data = wrapper.template()
    for variable in (wrapper.python_name, wrapper.root_name):
        if variable:
            assert data.count(wrapper.empty_line(variable) + wrapper.newline) == 1
    assert read_recorded(wrapper, data, 866) == Recorded()


@pytest.mark.parametrize("name", NAMES)
def test_nothing_recorded_is_the_template_plus_a_checksum(name):
    wrapper = BY_NAME[name]

    data = render(wrapper, Recorded(), 866)

    lines = data.split(wrapper.newline)
    template = wrapper.template().split(wrapper.newline)
    at = 0 if wrapper.kind == "ps1" else 1
    assert lines[at].startswith((b"rem Written by ", b"# Written by "))
    assert lines[:at] + lines[at + 1 :] == template
    body = wrapper.newline.join(template)
    assert lines[at].endswith(b"sha256 " + hashlib.sha256(body).hexdigest().encode())
    assert is_pristine(wrapper, data)


def test_sh_records_a_single_quoted_word():
    wrapper = BY_NAME["cleanup_tokens.sh"]
    data = render(wrapper, Recorded(python=SH_PYTHON, root="/srv/it's"), 866)

    assert b"\nrecorded_python='/srv/venvs/it'\\''s (x) & 100% \xd1\x91\xd0\xb6/bin/python'\n" in (
        data
    )
    assert b"\nrecorded_root='/srv/it'\\''s'\n" in data
    assert read_recorded(wrapper, data) == Recorded(python=SH_PYTHON, root="/srv/it's")
    # sh itself reads the word back as the path.
    assigned = data.split(b"\n")
    line = next(x for x in assigned if x.startswith(b"recorded_python="))
    echoed = subprocess.run(
        ["sh", "-c", line.decode() + '\nprintf %s "$recorded_python"'],
        capture_output=True,
        check=True,
    ).stdout
    assert echoed.decode() == SH_PYTHON


def test_bat_is_written_in_the_oem_code_page_with_percent_doubled():
    wrapper = BY_NAME["cleanup_tokens.bat"]
    data = render(wrapper, Recorded(python=WIN_PYTHON, root=WIN_ROOT), 866)

    expected = 'set "RECORDED_PY=' + WIN_PYTHON.replace("%", "%%") + '"\r\n'
    assert expected.encode("cp866") in data
    assert ('set "RECORDED_ROOT=' + WIN_ROOT + '"\r\n').encode("cp866") in data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert read_recorded(wrapper, data, 866) == Recorded(python=WIN_PYTHON, root=WIN_ROOT)
    # Before chcp 65001: cmd decodes them in the OEM code page.
    assert data.index(b'set "RECORDED_PY=') < data.index(b"chcp 65001")
    assert data.index(b'set "RECORDED_ROOT=') < data.index(b"chcp 65001")


def test_bat_refuses_a_path_its_code_page_cannot_write():
    wrapper = BY_NAME["cleanup_tokens.bat"]

    with pytest.raises(TokenopsError) as raised:
        render(wrapper, Recorded(python=r"C:\用户\venv\Scripts\python.exe"), 866)

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(r"Cannot record python C:\用户\venv\Scripts\python.exe in ")
    assert "cleanup_tokens.bat: cmd.exe reads a .bat in this machine's OEM code page (cp866)" in (
        message
    )
    # cp1252 (a Western OEM page) has no Cyrillic either; UTF-8 (65001) writes anything.
    with pytest.raises(TokenopsError):
        render(wrapper, Recorded(python=WIN_PYTHON), 850)
    utf8 = render(wrapper, Recorded(python=WIN_PYTHON), 65001)
    assert WIN_PYTHON.replace("%", "%%").encode("utf-8") in utf8


def test_an_unknown_code_page_is_one_line():
    with pytest.raises(TokenopsError, match=r"no codec for this machine's OEM code page 99999"):
        codec_of(99999)
    assert codec_of(866) == "cp866"


def test_oem_code_page_elsewhere_than_windows():
    assert oem_code_page() == 437


@pytest.mark.parametrize("bad", ["C:\\a\nb\\python.exe", 'C:\\a"b\\python.exe', "C:\\a\tb"])
def test_a_path_that_would_break_the_line_is_refused(bad):
    with pytest.raises(TokenopsError, match="cannot be written into a script line"):
        render(BY_NAME["cleanup_tokens.ps1"], Recorded(python=bad), 866)


def test_ps1_doubles_every_quote_and_turns_utf8_with_a_bom_when_not_ascii():
    wrapper = BY_NAME["cleanup_tokens.ps1"]
    python = "C:\\it's \u2018q\u2019 ёж\\python.exe"

    data = render(wrapper, Recorded(python=python), 866)
    ascii_data = render(wrapper, Recorded(python=r"C:\venv\python.exe"), 866)

    assert data.startswith(BOM + b"# Written by ")
    assert (
        "$recordedPython = 'C:\\it''s \u2018\u2018q\u2019\u2019 ёж\\python.exe'\r\n".encode()
        in (data)
    )
    assert read_recorded(wrapper, data).python == python
    assert not ascii_data.startswith(BOM)
    assert ascii_data.isascii()
    assert is_pristine(wrapper, data)


def test_register_task_records_the_root_only():
    wrapper = BY_NAME["register_task.ps1"]
    data = render(wrapper, Recorded(python=r"C:\p.exe", root=r"C:\app"), 866)

    assert read_recorded(wrapper, data) == Recorded(root=r"C:\app")
    assert b"p.exe" not in data


def test_an_edited_file_is_not_pristine():
    wrapper = BY_NAME["cleanup_tokens.sh"]
    data = render(wrapper, Recorded(python=SH_PYTHON), 866)

    assert is_pristine(wrapper, data)
    assert not is_pristine(wrapper, data.replace(b'exit "$rc"', b"exit 0"))
    assert not is_pristine(wrapper, data + b"# mine\n")
    assert not is_pristine(wrapper, b"#!/bin/sh\necho mine\n")


@pytest.mark.parametrize("name", NAMES)
def test_an_earlier_releases_template_is_pristine(name):
    """A user who copied the scripts by hand before --write-scripts existed."""
    stored = subprocess.run(
        ["git", "show", f"{EARLIER_COMMIT}:scripts/{name}"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    checked_out = stored if name.endswith(".sh") else stored.replace(b"\n", b"\r\n")

    for data in (stored, checked_out):
        assert hashlib.sha256(data).hexdigest() in EARLIER_TEMPLATES[name]
        assert is_pristine(BY_NAME[name], data)


def windows_values() -> dict[str, Recorded]:
    return {"windows": Recorded(python=WIN_PYTHON)}


def test_write_into_a_new_folder_then_up_to_date(tmp_path):
    folder = tmp_path / "a" / "scripts"

    first = write_wrappers(folder, {"linux": Recorded(python=SH_PYTHON)}, code_page=866)
    second = write_wrappers(folder, {"linux": Recorded(python=SH_PYTHON)}, code_page=866)

    assert statuses(first) == dict.fromkeys(NAMES, WRITTEN)
    assert statuses(second) == dict.fromkeys(NAMES, UP_TO_DATE)
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)  # no temporary file left
    sh = folder / "cleanup_tokens.sh"
    assert os.access(sh, os.X_OK)
    assert not os.access(folder / "cleanup_tokens.bat", os.X_OK)
    assert read_recorded(BY_NAME["cleanup_tokens.sh"], sh.read_bytes()).python == SH_PYTHON
    # Templates for the other platform: nothing recorded.
    bat = BY_NAME["cleanup_tokens.bat"]
    assert read_recorded(bat, (folder / bat.name).read_bytes()) == Recorded()
    assert first.error() is None
    assert first.changed and not second.changed


def test_another_python_rewrites_the_files_that_record_it(tmp_path):
    write_wrappers(tmp_path, windows_values(), code_page=866)

    again = write_wrappers(
        tmp_path, {"windows": Recorded(python=r"C:\v\python.exe")}, code_page=866
    )

    assert statuses(again) == {
        "cleanup_tokens.bat": WRITTEN,
        "cleanup_tokens.ps1": WRITTEN,
        "register_task.ps1": UP_TO_DATE,
        "cleanup_tokens.sh": UP_TO_DATE,
    }


def test_a_lost_run_bit_is_restored(tmp_path):
    write_wrappers(tmp_path, {}, code_page=866)
    sh = tmp_path / "cleanup_tokens.sh"
    sh.chmod(0o644)

    again = write_wrappers(tmp_path, {}, code_page=866)

    assert statuses(again)["cleanup_tokens.sh"] == WRITTEN
    assert sh.stat().st_mode & stat.S_IXUSR


def test_a_changed_file_is_kept_unless_forced(tmp_path):
    write_wrappers(tmp_path, windows_values(), code_page=866)
    ps1 = tmp_path / "cleanup_tokens.ps1"
    mine = ps1.read_bytes() + b"# mine\r\n"
    ps1.write_bytes(mine)

    kept = write_wrappers(tmp_path, {"windows": Recorded(python=r"C:\v\p.exe")}, code_page=866)

    assert statuses(kept)["cleanup_tokens.ps1"] == KEPT
    assert statuses(kept)["cleanup_tokens.bat"] == WRITTEN  # the others are still written
    assert ps1.read_bytes() == mine
    assert kept.error() == (
        f"Kept {ps1}: changed since tokenops wrote it; run 'python manage.py "
        "token_schedule_hint --write-scripts --force' to replace it (your changes are lost)."
    )

    forced = write_wrappers(tmp_path, windows_values(), code_page=866, force=True)

    assert statuses(forced)["cleanup_tokens.ps1"] == REPLACED
    assert forced.error() is None
    assert read_recorded(BY_NAME["cleanup_tokens.ps1"], ps1.read_bytes()).python == WIN_PYTHON


def test_several_kept_files_are_named_on_one_line(tmp_path):
    for name in NAMES:
        (tmp_path / name).write_text("mine\n")

    result = write_wrappers(tmp_path, {}, code_page=866)

    assert statuses(result) == dict.fromkeys(NAMES, KEPT)
    assert "\n" not in result.error()
    assert result.error().startswith(f"Kept {tmp_path / NAMES[0]}, {tmp_path / NAMES[1]}, ")
    assert "changed since tokenops wrote them; run " in result.error()
    assert all((tmp_path / name).read_text() == "mine\n" for name in NAMES)


def test_a_refused_path_writes_nothing(tmp_path):
    folder = tmp_path / "scripts"

    with pytest.raises(TokenopsError, match="cp866"):
        write_wrappers(folder, {"windows": Recorded(python="C:\\用户\\python.exe")}, code_page=866)

    assert not folder.exists()


def test_a_folder_in_the_way_is_one_line(tmp_path):
    (tmp_path / "cleanup_tokens.sh").mkdir()

    with pytest.raises(
        TokenopsError, match=r"^Cannot write .*cleanup_tokens\.sh: it is a folder\.$"
    ):
        write_wrappers(tmp_path, {}, code_page=866)


def linux_project(root: Path, scripts: Path | None = None, python: str = SH_PYTHON) -> Project:
    return Project(root, "test", python, True, "linux", scripts)


def test_project_wrappers_record_this_python_and_a_root_only_when_needed(tmp_path):
    root = tmp_path / "app"
    root.mkdir()

    here = write_project_wrappers(linux_project(root), code_page=866)
    elsewhere = write_project_wrappers(linux_project(root, tmp_path / "ops"), code_page=866)

    sh = BY_NAME["cleanup_tokens.sh"]
    assert here.directory == root / "scripts"
    assert read_recorded(sh, (root / "scripts" / sh.name).read_bytes()) == Recorded(SH_PYTHON)
    assert read_recorded(sh, (tmp_path / "ops" / sh.name).read_bytes()) == Recorded(
        SH_PYTHON, str(root)
    )
    assert here.next_step() == (
        "Next: 'python manage.py token_schedule_hint' prints the schedule lines that run them."
    )
    assert elsewhere.next_step() == (
        f"Next: 'python manage.py token_schedule_hint --scripts-dir {tmp_path / 'ops'}' prints "
        "the schedule lines that run them."
    )


def test_detect_project_takes_the_scripts_dir_relative_to_the_current_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)

    project = detect_project("ops/scripts")

    assert project.scripts == tmp_path.resolve() / "ops" / "scripts"
    assert project.scripts_folder == project.scripts
    assert str(project.script("linux", "cleanup_tokens.sh")) == str(
        tmp_path.resolve() / "ops" / "scripts" / "cleanup_tokens.sh"
    )
    assert detect_project().scripts_folder == Path(detect_project().root) / "scripts"


@pytest.mark.django_db
def test_a_recorded_python_silences_the_venv_warning_until_it_is_gone(tmp_path):
    root = tmp_path / "app"
    root.mkdir()
    (root / "manage.py").write_text("")
    python = tmp_path / "venvs" / "app env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    project = linux_project(root, python=str(python))
    write_project_wrappers(project, code_page=866)

    found = wrapper_interpreter(project, "linux")
    warnings = readiness_warnings(project, ["linux"], "default")
    python.unlink()
    gone = wrapper_interpreter(project, "linux")
    gone_warnings = readiness_warnings(project, ["linux"], "default")

    assert (found.path, found.recorded, found.gone) == (python, str(python), False)
    assert found.described() == f"{python}  (recorded by --write-scripts)"
    assert warnings == []
    assert (gone.path, gone.gone) == (None, True)
    assert gone.described() == (
        "python on PATH (no env, .venv or venv with a python in the project root)  "
        f"(its recorded python {python} is gone)"
    )
    assert (
        f"cleanup_tokens.sh runs {python}, which no longer exists: run 'python manage.py "
        "token_schedule_hint --write-scripts' again with the python that should run the purge."
    ) in gone_warnings
    assert any("the scripts will not find it" in w for w in gone_warnings)


@pytest.mark.django_db
def test_outside_a_virtualenv_a_recorded_python_is_no_warning(tmp_path):
    (tmp_path / "manage.py").write_text("")
    project = Project(tmp_path, "test", os.path.realpath(os.sys.executable), False, "linux")
    with override_settings(BASE_DIR=tmp_path):
        write_project_wrappers(project, code_page=866)

    assert readiness_warnings(project, ["linux"], "default") == []
