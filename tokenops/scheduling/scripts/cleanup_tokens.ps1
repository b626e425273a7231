<#
.SYNOPSIS
Runs "python manage.py token_purge" for Windows Task Scheduler.

.DESCRIPTION
Works from any current directory (the project root is the parent of this script's
folder), uses the python recorded below by "manage.py token_schedule_hint --write-scripts"
while it exists, else the first of env\, .venv\, venv\ that has Scripts\python.exe (else
python on PATH, said in the log), appends everything to logs\cleanup_tokens.log as UTF-8
and exits with token_purge's exit code. Run it with "powershell -NoProfile -File", not
-Command, so that the exit code reaches Task Scheduler.

.EXAMPLE
powershell -NoProfile -ExecutionPolicy Bypass -File scripts\cleanup_tokens.ps1 -OlderThan 7d -DryRun
#>
[CmdletBinding()]
param(
    # Keep tokens until they have been expired this long (token_purge --older-than).
    [string]$OlderThan,
    # Rows per transaction (token_purge --batch-size).
    [int]$BatchSize,
    # Database alias (token_purge --database).
    [string]$Database,
    # Output format (token_purge --format).
    [ValidateSet('table', 'json')]
    [string]$Format,
    # Show what would be deleted and write nothing (token_purge --dry-run).
    [switch]$DryRun,
    # Any other token_purge options, passed through as they are.
    [Parameter(ValueFromRemainingArguments = $true)]
    [string[]]$PurgeArgs
)

$ErrorActionPreference = 'Stop'
$utf8 = New-Object System.Text.UTF8Encoding($false)

# Filled in by "python manage.py token_schedule_hint --write-scripts", empty in the
# template: the python that wrote this file, and the project root when this file is not
# in the project's scripts folder.
$recordedPython = ''
$recordedRoot = ''

$root = Split-Path -Parent $PSScriptRoot
if ($recordedRoot) { $root = $recordedRoot }
$logDir = Join-Path $root 'logs'
$log = Join-Path $logDir 'cleanup_tokens.log'
New-Item -ItemType Directory -Force -Path $logDir | Out-Null

function Write-Log([string]$Line) {
    [System.IO.File]::AppendAllText($log, $Line + "`r`n", $utf8)
}

$python = $null
$recordedGone = $false
if ($recordedPython) {
    if (Test-Path -LiteralPath $recordedPython -PathType Leaf) {
        $python = $recordedPython
    } else {
        $recordedGone = $true
    }
}
if (-not $python) {
    foreach ($venv in 'env', '.venv', 'venv') {
        $candidate = Join-Path $root (Join-Path $venv 'Scripts\python.exe')
        if (Test-Path -LiteralPath $candidate -PathType Leaf) {
            $python = $candidate
            break
        }
    }
}

Write-Log ("==== cleanup_tokens.ps1 start {0:yyyy-MM-dd HH:mm:ss zzz}" -f (Get-Date))
Write-Log "project root: $root"
if ($recordedGone) {
    Write-Log "recorded python $recordedPython not found, looking for env, .venv and venv in the project root"
}
if (-not $python) {
    $onPath = Get-Command python.exe -CommandType Application -ErrorAction SilentlyContinue |
        Select-Object -First 1
    if (-not $onPath) {
        Write-Log 'no venv found (looked for env, .venv and venv in the project root), no python on PATH'
        Write-Log ("==== cleanup_tokens.ps1 end {0:yyyy-MM-dd HH:mm:ss zzz} exit code 9009" -f (Get-Date))
        Write-Error "cleanup_tokens: no python found, see $log" -ErrorAction Continue
        exit 9009
    }
    $python = $onPath.Source
    Write-Log 'no venv found (looked for env, .venv and venv in the project root), using python on PATH'
}

$commandArgs = @('manage.py', 'token_purge')
if ($OlderThan) { $commandArgs += @('--older-than', $OlderThan) }
if ($BatchSize) { $commandArgs += @('--batch-size', "$BatchSize") }
if ($Database) { $commandArgs += @('--database', $Database) }
if ($Format) { $commandArgs += @('--format', $Format) }
if ($DryRun) { $commandArgs += '--dry-run' }
if ($PurgeArgs) { $commandArgs += $PurgeArgs }

Write-Log "python: $python"
Write-Log ("command: python " + ($commandArgs -join ' '))

# Python prints UTF-8; PowerShell must decode it as UTF-8, not the OEM code page.
$env:PYTHONUTF8 = '1'
$env:PYTHONIOENCODING = 'utf-8'
$oldEncoding = $null
try {
    $oldEncoding = [Console]::OutputEncoding
    [Console]::OutputEncoding = $utf8
} catch {
    $oldEncoding = $null
}

# Native stderr lines arrive as error records: they must not stop the script.
$ErrorActionPreference = 'Continue'
Push-Location -LiteralPath $root
try {
    & $python @commandArgs 2>&1 | ForEach-Object { Write-Log "$_" }
    $exitCode = $LASTEXITCODE
} finally {
    Pop-Location
    if ($oldEncoding) { [Console]::OutputEncoding = $oldEncoding }
}

Write-Log ("==== cleanup_tokens.ps1 end {0:yyyy-MM-dd HH:mm:ss zzz} exit code $exitCode" -f (Get-Date))
Write-Output "cleanup_tokens: exit code $exitCode, log: $log"
exit $exitCode
