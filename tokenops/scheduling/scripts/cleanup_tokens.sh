#!/bin/sh
# cleanup_tokens.sh [token_purge options]
# Runs "python manage.py token_purge" for cron or a systemd timer: works from any
# current directory, uses the python recorded below (else the project's venv), appends
# everything to logs/cleanup_tokens.log and exits with token_purge's exit code.

# Filled in by "python manage.py token_schedule_hint --write-scripts", empty in the
# template: the python that wrote this file, and the project root when this file is not
# in the project's scripts folder.
recorded_python=''
recorded_root=''

# The project root is the parent of this script's folder, unless recorded.
script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P) || exit 1
root=$(dirname -- "$script_dir")
if [ -n "$recorded_root" ]; then
    root=$recorded_root
fi
log_dir="$root/logs"
log="$log_dir/cleanup_tokens.log"
if ! mkdir -p -- "$log_dir"; then
    echo "cleanup_tokens: cannot create the log folder $log_dir" >&2
    exit 127
fi

# UTF-8 output whatever the server's locale.
PYTHONUTF8=1
PYTHONIOENCODING=utf-8
export PYTHONUTF8 PYTHONIOENCODING

# The recorded python while it exists; else the first of env/, .venv/, venv/ that has
# bin/python; else python3 or python on PATH.
py=""
gone=""
if [ -n "$recorded_python" ]; then
    if [ -f "$recorded_python" ] && [ -x "$recorded_python" ]; then
        py=$recorded_python
    else
        gone=1
    fi
fi
if [ -z "$py" ]; then
    for venv in env .venv venv; do
        if [ -x "$root/$venv/bin/python" ]; then
            py="$root/$venv/bin/python"
            break
        fi
    done
fi

{
    echo "==== cleanup_tokens.sh start $(date '+%Y-%m-%d %H:%M:%S %z')"
    echo "project root: $root"
    if [ -n "$gone" ]; then
        echo "recorded python $recorded_python not found, looking for env, .venv and venv in the project root"
    fi
} >>"$log"
if [ -z "$py" ]; then
    py=$(command -v python3 || command -v python)
    if [ -z "$py" ]; then
        {
            echo "no venv found (looked for env, .venv and venv in the project root), no python3 or python on PATH"
            echo "==== cleanup_tokens.sh end $(date '+%Y-%m-%d %H:%M:%S %z') exit code 127"
        } >>"$log"
        echo "cleanup_tokens: no python found, see $log" >&2
        exit 127
    fi
    echo "no venv found (looked for env, .venv and venv in the project root), using python on PATH" >>"$log"
fi
{
    echo "python: $py"
    echo "command: python manage.py token_purge $*"
} >>"$log"

cd -- "$root" || exit 1
"$py" manage.py token_purge "$@" >>"$log" 2>&1
rc=$?
echo "==== cleanup_tokens.sh end $(date '+%Y-%m-%d %H:%M:%S %z') exit code $rc" >>"$log"
if [ -t 1 ]; then
    echo "cleanup_tokens: exit code $rc, log: $log"
fi
exit "$rc"
