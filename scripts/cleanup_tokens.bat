@echo off
rem cleanup_tokens.bat [token_purge options]
rem Runs "python manage.py token_purge" for Windows Task Scheduler: works from any
rem current directory, uses the project's venv, appends everything to
rem logs\cleanup_tokens.log and exits with token_purge's exit code.
setlocal EnableExtensions DisableDelayedExpansion

rem The project root is the parent of this script's folder.
for %%I in ("%~dp0..") do set "ROOT=%%~fI"
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

rem The first of env\, .venv\, venv\ that has Scripts\python.exe; else python on PATH.
set "PY="
call :find_venv env
call :find_venv .venv
call :find_venv venv

echo ==== cleanup_tokens.bat start %DATE% %TIME% >> "%LOG%"
echo project root: "%ROOT%" >> "%LOG%"
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

rem :find_venv NAME sets PY to ROOT\NAME\Scripts\python.exe if it exists and PY is unset.
:find_venv
if defined PY exit /b 0
if exist "%ROOT%\%~1\Scripts\python.exe" set "PY=%ROOT%\%~1\Scripts\python.exe"
exit /b 0
