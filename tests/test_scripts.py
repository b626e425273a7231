"""The wrapper templates read, not run: line endings, blinter, the .ps1 files' syntax trees.

No PowerShell can run here (Wine's powershell.exe is a stub that runs nothing), so the
.ps1 files are parsed with tree-sitter and what they do is read off the tree.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests import powershell as ps
from tests.utils import PYTHON, ROOT

# The one copy of the wrappers: package data, which --write-scripts fills in.
SCRIPTS = ROOT / "tokenops" / "scheduling" / "scripts"
SH_IN_GIT = "tokenops/scheduling/scripts/cleanup_tokens.sh"

WINDOWS_SCRIPTS = ["cleanup_tokens.bat", "cleanup_tokens.ps1", "register_task.ps1"]


@pytest.mark.parametrize("name", WINDOWS_SCRIPTS)
def test_windows_scripts_have_crlf_line_endings(name):
    data = (SCRIPTS / name).read_bytes()
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n"), "a bare LF"
    assert data.count(b"\r") == data.count(b"\r\n"), "a bare CR"


@pytest.mark.parametrize("name", WINDOWS_SCRIPTS)
def test_windows_scripts_are_ascii(name):
    """cmd reads a .bat in the console code page, Windows PowerShell 5.1 a BOM-less .ps1
    in the ANSI one: only ASCII reads the same everywhere."""
    (SCRIPTS / name).read_bytes().decode("ascii")


@pytest.mark.slow
def test_blinter_finds_no_errors():
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "blinter",
            str(SCRIPTS / "cleanup_tokens.bat"),
            "--fail-on",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR LEVEL ISSUES" not in result.stdout
    assert "Error:" not in result.stdout


@pytest.mark.slow
def test_blinter_does_report_errors(tmp_path):
    """Guards the test above: blinter does fail on a broken script."""
    broken = tmp_path / "_broken.bat"
    broken.write_bytes(b"@echo off\r\nif exist (\r\ngoto :nowhere\r\n")
    result = subprocess.run(
        [PYTHON, "-m", "blinter", str(broken), "--fail-on", "error"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout


@pytest.mark.slow
def test_the_sh_script_is_executable_in_git():
    """A clone gets the run bit from git's index; ``git add`` takes it from the file, so a
    template not committed yet (just moved) must be executable on disk."""
    listing = subprocess.run(
        ["git", "ls-files", "-s", SH_IN_GIT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert os.access(SCRIPTS / "cleanup_tokens.sh", os.X_OK)
    if listing:
        assert listing.startswith("100755 ")
    assert b"\r\n" not in (SCRIPTS / "cleanup_tokens.sh").read_bytes()


def sh_syntax_errors(path) -> str:
    """What ``sh -n`` (parse, run nothing) says about ``path``; '' when it parses."""
    result = subprocess.run(
        ["sh", "-n", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return result.stderr if result.returncode else ""


def test_the_sh_script_is_posix_sh(tmp_path):
    data = (SCRIPTS / "cleanup_tokens.sh").read_bytes()
    assert data.startswith(b"#!/bin/sh\n")
    assert sh_syntax_errors(SCRIPTS / "cleanup_tokens.sh") == ""
    # Guards the check: sh -n does refuse a broken script.
    broken = tmp_path / "broken.sh"
    broken.write_bytes(data.replace(b"fi\n", b"\n", 1))
    assert sh_syntax_errors(broken)


def source(name: str) -> bytes:
    return (SCRIPTS / name).read_bytes()


def check_cleanup_tokens_ps1(data: bytes) -> None:
    """What cleanup_tokens.ps1 must do, read off its syntax tree."""
    root = ps.parse(data)
    assert ps.syntax_errors(root) == []

    params = ps.parameters(root)
    assert list(params) == ["OlderThan", "BatchSize", "Database", "Format", "DryRun", "PurgeArgs"]
    assert "[switch]" in params["DryRun"]
    assert "[ValidateSet('table', 'json')]" in params["Format"]
    assert any("ValueFromRemainingArguments" in a for a in params["PurgeArgs"])

    values = ps.assignments(root)
    assert ("$root", "=", "Split-Path -Parent $PSScriptRoot") in values
    assert ("$logDir", "=", "Join-Path $root 'logs'") in values
    assert ("$log", "=", "Join-Path $logDir 'cleanup_tokens.log'") in values
    assert ("$env:PYTHONUTF8", "=", "'1'") in values
    assert ("$env:PYTHONIOENCODING", "=", "'utf-8'") in values

    # Venv discovery: env, .venv, venv in that order, Scripts\python.exe, first one wins.
    loop = next(n for n in ps.walk(root) if n.type == "foreach_statement")
    assert re.search(r"\(\$venv in 'env', '\.venv', 'venv'\)", ps.text(loop))
    assert "Join-Path $venv 'Scripts\\python.exe'" in ps.text(loop)
    assert "break" in ps.text(loop)

    # The command line: manage.py token_purge, then each option from its own parameter.
    # PowerShell variables ignore case: a local named like a parameter would overwrite it.
    parameter_names = {name.lower() for name in params}
    for target, _, _ in values:
        assert target.lstrip("$").lower() not in parameter_names, target
    purge = [(op, value) for target, op, value in values if target == "$commandArgs"]
    assert purge[0] == ("=", "@('manage.py', 'token_purge')")
    guarded = {}
    for node in ps.walk(root):
        if node.type == "if_statement" and "$commandArgs +=" in ps.text(node):
            match = re.fullmatch(
                r"if \(\$(\w+)\) \{ \$commandArgs \+= (.+) \}", " ".join(ps.text(node).split())
            )
            assert match, ps.text(node)
            guarded[match[1]] = match[2]
    assert guarded == {
        "OlderThan": "@('--older-than', $OlderThan)",
        "BatchSize": "@('--batch-size', \"$BatchSize\")",
        "Database": "@('--database', $Database)",
        "Format": "@('--format', $Format)",
        "DryRun": "'--dry-run'",
        "PurgeArgs": "$PurgeArgs",
    }

    # python runs with those arguments from the project root, stdout and stderr to the log.
    run = next(
        n for n in ps.walk(root) if n.type == "pipeline" and ps.text(n).startswith("& $python")
    )
    assert " ".join(ps.text(run).split()) == (
        '& $python @commandArgs 2>&1 | ForEach-Object { Write-Log "$_" }'
    )
    assert ps.commands(root, "Push-Location")[0].value("-LiteralPath") == "$root"
    write_log = next(n for n in ps.walk(root) if n.type == "function_statement")
    assert "[System.IO.File]::AppendAllText($log, $Line" in ps.text(write_log)
    assert ("$utf8", "=", "New-Object System.Text.UTF8Encoding($false)") in values

    # The exit code: read right after python, and the script's last word.
    block = run.parent
    statements = block.named_children
    after = statements[statements.index(run) + 1]
    assert ps.text(after) == "$exitCode = $LASTEXITCODE"
    top = ps.statements_of(root)
    assert ps.text(top[-1]) == "exit $exitCode"


def test_cleanup_tokens_ps1():
    check_cleanup_tokens_ps1(source("cleanup_tokens.ps1"))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("exit $exitCode", "exit 0"),
        ("$exitCode = $LASTEXITCODE", "$exitCode = 0"),
        ("'--older-than', $OlderThan", "'--older_than', $OlderThan"),
        ("2>&1 |", "|"),
        ("'env', '.venv', 'venv'", "'.venv', 'env', 'venv'"),
        ("'cleanup_tokens.log'", "'cleanup.log'"),
        ("    [switch]$DryRun,", "    [switch]$DryRun"),
        ("$commandArgs = @(", "$purgeArgs = @("),
        ("& $python @commandArgs", "& $python @PurgeArgs"),
    ],
)
def test_the_ps1_checks_catch_a_broken_script(old, new):
    data = source("cleanup_tokens.ps1")
    assert old.encode() in data
    with pytest.raises(AssertionError):
        check_cleanup_tokens_ps1(data.replace(old.encode(), new.encode(), 1))


def check_register_task_ps1(data: bytes) -> None:
    root = ps.parse(data)
    assert ps.syntax_errors(root) == []

    params = ps.parameters(root)
    assert list(params) == [
        "At", "Every", "DayOfWeek", "OlderThan", "Arguments", "TaskName", "Unregister"
    ]  # fmt: skip
    assert "[ValidateSet('Day', 'Week')]" in params["Every"]
    assert "[switch]" in params["Unregister"]

    values = ps.assignments(root)
    assert ("$bat", "=", "Join-Path $PSScriptRoot 'cleanup_tokens.bat'") in values
    assert ("$root", "=", "Split-Path -Parent $PSScriptRoot") in values

    # -Unregister removes the task and stops there.
    unregister = next(
        n
        for n in ps.walk(root)
        if n.type == "if_statement" and ps.text(n).startswith("if ($Unregister)")
    )
    removal = ps.commands(unregister, "Unregister-ScheduledTask")
    assert removal and removal[0].value("-TaskName") == "$TaskName"
    assert removal[0].value("-Confirm") == "$false"
    assert "exit 0" in ps.text(unregister)

    # Daily or weekly at the chosen time.
    triggers = ps.commands(root, "New-ScheduledTaskTrigger")
    assert {t.value("-Daily") for t in triggers} == {"", None}
    weekly = next(t for t in triggers if t.value("-Weekly") == "")
    assert weekly.value("-DaysOfWeek") == "$DayOfWeek"
    assert {t.value("-At") for t in triggers} == {"$time"}

    # cmd /d /c ""<bat>" <options>", started in the project root.
    action = ps.commands(root, "New-ScheduledTaskAction")[0]
    assert action.value("-Execute") == "$cmd"
    assert ("$cmd", "=", "Join-Path $env:SystemRoot 'System32\\cmd.exe'") in values
    assert action.value("-WorkingDirectory") == "$root"
    operands = ps.additive_operands(action.node)
    assert operands == ["'/d /c \"\"'", "$bat", "'\" '", "($batArgs -join ' ')", "'\"'"]

    # As the current user, not elevated, not SYSTEM; a missed run starts when it can.
    principal = ps.commands(root, "New-ScheduledTaskPrincipal")[0]
    assert principal.value("-UserId") == "$user"
    assert principal.value("-LogonType") == "Interactive"
    assert principal.value("-RunLevel") == "Limited"
    assert (
        "$user",
        "=",
        "[System.Security.Principal.WindowsIdentity]::GetCurrent().Name",
    ) in values
    text = data.decode("ascii")
    assert not re.search(r"NT AUTHORITY|LocalSystem|S-1-5-18|-UserId\s+\W?SYSTEM", text, re.I)
    assert "Highest" not in text
    settings = ps.commands(root, "New-ScheduledTaskSettingsSet")[0]
    assert settings.value("-StartWhenAvailable") == ""

    # Registered idempotently: -Force replaces a task of the same name.
    register = ps.commands(root, "Register-ScheduledTask")[0]
    assert register.value("-Force") == ""
    for parameter, variable in [
        ("-TaskName", "$TaskName"),
        ("-Action", "$action"),
        ("-Trigger", "$trigger"),
        ("-Principal", "$principal"),
        ("-Settings", "$settings"),
    ]:
        assert register.value(parameter) == variable


def test_register_task_ps1():
    check_register_task_ps1(source("register_task.ps1"))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("-StartWhenAvailable ", ""),
        ("-RunLevel Limited", "-RunLevel Highest"),
        ("-LogonType Interactive", "-LogonType ServiceAccount"),
        (" -Force |", " |"),
        ("Unregister-ScheduledTask -TaskName $TaskName", "Write-Output $TaskName"),
        ("'/d /c \"\"' + $bat", "'/d /c \"' + $bat"),
        ("New-ScheduledTaskTrigger -Daily -At $time", "New-ScheduledTaskTrigger -Daily -At '3:00'"),
        ("$settings = New", "$settings = (New"),
    ],
)
def test_the_register_checks_catch_a_broken_script(old, new):
    data = source("register_task.ps1")
    assert old.encode() in data
    with pytest.raises(AssertionError):
        check_register_task_ps1(data.replace(old.encode(), new.encode(), 1))


def test_register_task_argument_quotes_the_bat_for_cmd():
    """Evaluate the -Argument expression: cmd /c strips the outer quotes, keeps the inner."""
    bat = r"C:\Users\Иван Петров\my project (1) & co\scripts\cleanup_tokens.bat"
    argument = ps.register_task_argument(
        source("register_task.ps1"), bat, ["--older-than 7d", "--batch-size 500"]
    )
    assert argument == f'/d /c ""{bat}" --older-than 7d --batch-size 500"'


def test_a_syntax_error_is_seen():
    """Guards the syntax checks: tree-sitter does flag broken PowerShell."""
    broken = source("cleanup_tokens.ps1").replace(b"foreach ($venv in", b"foreach ($venv in (", 1)
    assert ps.syntax_errors(ps.parse(broken))
