@echo off
rem cleanup_tokens.bat [token_purge options]
rem Runs "python manage.py token_purge" for Windows Task Scheduler: works from any
rem current directory, uses the python recorded below (else the project's venv),
rem appends everything to logs\cleanup_tokens.log and exits with token_purge's exit code.
setlocal EnableExtensions DisableDelayedExpansion

rem Filled in by "python manage.py token_schedule_hint --write-scripts", empty in the
rem template: the python that wrote this file, and the project root when this file is
rem not in the project's scripts folder. cmd reads these two lines in the OEM code page
rem (cp866 on a Russian Windows): they stay before the chcp below, written in it.
set "RECORDED_PY="
set "RECORDED_ROOT="

rem The project root is the parent of this script's folder, unless recorded.
for %%I in ("%~dp0..") do set "ROOT=%%~fI"
if defined RECORDED_ROOT set "ROOT=%RECORDED_ROOT%"
set "LOGDIR=%ROOT%\logs"
set "LOG=%LOGDIR%\cleanup_tokens.log"
if not exist "%LOGDIR%\" mkdir "%LOGDIR%"
if not exist "%LOGDIR%\" goto :no_log

rem Python writes UTF-8 whatever the console code page (cp866, cp1251, ...), and so
rem does echo while the code page is 65001; the old one is restored at the end.
set "PYTHONUTF8=1"
set "PYTHONIOENCODING=utf-8"
set "OLDCP="
for /f "tokens=2 delims=:." %%C in ('chcp') do set "OLDCP=%%C"
if defined OLDCP set "OLDCP=%OLDCP: =%"
chcp 65001 >nul 2>&1

rem The recorded python while it exists; else the first of env\, .venv\, venv\ that
rem has Scripts\python.exe; else python on PATH. The recorded path may hold a percent
rem sign, so it is only read with delayed expansion (!RECORDED_PY!): Wine's cmd expands
rem a percent sign in a value again, Windows' does not.
set "PY="
set "RECORDED="
set "GONE="
if defined RECORDED_PY call :find_recorded
call :find_venv env
call :find_venv .venv
call :find_venv venv

echo ==== cleanup_tokens.bat start %DATE% %TIME% >> "%LOG%"
echo project root: "%ROOT%" >> "%LOG%"
if defined GONE call :log_recorded "not found, looking for env, .venv and venv in the project root"
if defined RECORDED goto :run_recorded
if defined PY goto :run
for %%P in (python.exe) do set "PY=%%~$PATH:P"
if not defined PY goto :no_python
echo no venv found (looked for env, .venv and venv in the project root), using python on PATH >> "%LOG%"

:run
echo python: "%PY%" >> "%LOG%"
echo command: python manage.py token_purge %* >> "%LOG%"
pushd "%ROOT%"
"%PY%" manage.py token_purge %* >> "%LOG%" 2>&1
set "RC=%ERRORLEVEL%"
popd
goto :finish

:run_recorded
setlocal EnableDelayedExpansion
echo python: "!RECORDED_PY!" >> "%LOG%"
endlocal
echo command: python manage.py token_purge %* >> "%LOG%"
set ARGS=%*
pushd "%ROOT%"
setlocal EnableDelayedExpansion
"!RECORDED_PY!" manage.py token_purge !ARGS! >> "%LOG%" 2>&1
endlocal & set "RC=%ERRORLEVEL%"
popd
goto :finish

:no_python
echo no venv found (looked for env, .venv and venv in the project root), no python on PATH >> "%LOG%"
set "RC=9009"

:finish
echo ==== cleanup_tokens.bat end %DATE% %TIME% exit code %RC% >> "%LOG%"
if defined OLDCP chcp %OLDCP% >nul 2>&1
echo cleanup_tokens: exit code %RC%, log: "%LOG%"
exit /b %RC%

:no_log
echo cleanup_tokens: cannot create the log folder "%LOGDIR%" 1>&2
exit /b 9009

rem :find_recorded sets RECORDED if the recorded python exists, else GONE.
:find_recorded
setlocal EnableDelayedExpansion
set "FOUND="
if exist "!RECORDED_PY!" set "FOUND=1"
endlocal & set "RECORDED=%FOUND%"
if not defined RECORDED set "GONE=1"
exit /b 0

rem :log_recorded TEXT logs the recorded python and TEXT.
:log_recorded
setlocal EnableDelayedExpansion
echo recorded python "!RECORDED_PY!" %~1 >> "%LOG%"
endlocal
exit /b 0

rem :find_venv NAME sets PY to ROOT\NAME\Scripts\python.exe if it exists and no python
rem was found yet.
:find_venv
if defined PY exit /b 0
if defined RECORDED exit /b 0
if exist "%ROOT%\%~1\Scripts\python.exe" set "PY=%ROOT%\%~1\Scripts\python.exe"
exit /b 0
