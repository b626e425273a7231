<#
.SYNOPSIS
Registers (or updates) the Windows scheduled task that runs cleanup_tokens.bat.

.DESCRIPTION
The task runs scripts\cleanup_tokens.bat daily or weekly at the chosen time, as the
current user with limited rights (not SYSTEM, not elevated), only while that user is
logged on, and starts a missed run as soon as it can (StartWhenAvailable: the machine
was asleep or off). Running it again with other options updates the same task.
-Unregister removes it. No administrator rights are needed.

.EXAMPLE
powershell -NoProfile -ExecutionPolicy Bypass -File scripts\register_task.ps1 -At 03:00 -Every Week -DayOfWeek Sunday -OlderThan 7d

.EXAMPLE
powershell -NoProfile -ExecutionPolicy Bypass -File scripts\register_task.ps1 -Unregister
#>
[CmdletBinding()]
param(
    # Time of day, 24-hour HH:MM, local time.
    [ValidatePattern('^([01]?[0-9]|2[0-3]):[0-5][0-9]$')]
    [string]$At = '03:00',
    # Day or Week.
    [ValidateSet('Day', 'Week')]
    [string]$Every = 'Day',
    # The day of a weekly run.
    [ValidateSet('Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday')]
    [string]$DayOfWeek = 'Sunday',
    # token_purge --older-than for each run (empty: TOKENOPS['OLDER_THAN']).
    [string]$OlderThan,
    # Any other token_purge options, as one string, for example '--batch-size 500'.
    [string]$Arguments,
    # The task's name in the Task Scheduler Library.
    [string]$TaskName = 'tokenops cleanup_tokens',
    # Remove the task instead of registering it.
    [switch]$Unregister
)

$ErrorActionPreference = 'Stop'

# Filled in by "python manage.py token_schedule_hint --write-scripts", empty in the
# template: the project root when this file is not in the project's scripts folder.
$recordedRoot = ''

$root = Split-Path -Parent $PSScriptRoot
if ($recordedRoot) { $root = $recordedRoot }
$bat = Join-Path $PSScriptRoot 'cleanup_tokens.bat'

if ($Unregister) {
    $existing = Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    if ($existing) {
        Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
        Write-Output "Removed scheduled task '$TaskName'."
    } else {
        Write-Output "No scheduled task '$TaskName' to remove."
    }
    exit 0
}

if (-not (Test-Path -LiteralPath $bat -PathType Leaf)) {
    Write-Error "register_task: $bat not found" -ErrorAction Continue
    exit 1
}

$batArgs = @()
if ($OlderThan) { $batArgs += "--older-than $OlderThan" }
if ($Arguments) { $batArgs += $Arguments }

$time = [datetime]::ParseExact($At, 'H:mm', [System.Globalization.CultureInfo]::InvariantCulture)
if ($Every -eq 'Week') {
    $trigger = New-ScheduledTaskTrigger -Weekly -DaysOfWeek $DayOfWeek -At $time
} else {
    $trigger = New-ScheduledTaskTrigger -Daily -At $time
}

$cmd = Join-Path $env:SystemRoot 'System32\cmd.exe'
$action = New-ScheduledTaskAction -Execute $cmd -Argument ('/d /c ""' + $bat + '" ' + ($batArgs -join ' ') + '"') -WorkingDirectory $root

$user = [System.Security.Principal.WindowsIdentity]::GetCurrent().Name
$principal = New-ScheduledTaskPrincipal -UserId $user -LogonType Interactive -RunLevel Limited

$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew -ExecutionTimeLimit (New-TimeSpan -Hours 2)

Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger -Principal $principal -Settings $settings -Description "tokenops: python manage.py token_purge in $root" -Force | Out-Null

Write-Output "Scheduled task '$TaskName': every $($Every.ToLower()) at $At$(if ($Every -eq 'Week') { " ($DayOfWeek)" }), runs $bat $($batArgs -join ' ')"
Write-Output "Check it:  schtasks /Query /TN `"$TaskName`" /V /FO LIST"
Write-Output "Run now:   schtasks /Run /TN `"$TaskName`""
Write-Output "Log:       $(Join-Path $root 'logs\cleanup_tokens.log')"
