# shellcheck shell=bash
# Sourced by .ci/run: the services the tests need, stopped again when the shell exits.
#
#   start_service NAME   starts .ci/NAME.sh unless NAME already runs (then it is someone
#                        else's and is left running)
#
# The EXIT trap stops, last started first, the services this shell started, and only those:
# on success, on a failing command (set -e) and on Ctrl-C or SIGTERM.
_ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_ci_started=()

start_service() {
    local name=$1
    if bash "$_ci_dir/$name.sh" status >/dev/null 2>&1; then
        echo "[ci] $name was already running: left running at the end"
    else
        _ci_started+=("$name")   # before it starts: one that fails half-way is stopped too
    fi
    bash "$_ci_dir/$name.sh"
}

stop_started_services() {
    local i name
    for ((i = ${#_ci_started[@]} - 1; i >= 0; i--)); do
        name=${_ci_started[i]}
        echo "[ci] stopping $name"
        bash "$_ci_dir/$name.sh" stop || echo "[ci] could not stop $name: see .ci/$name.sh" >&2
    done
    _ci_started=()
}

_ci_exit() {
    local code=$?
    trap - EXIT INT TERM
    stop_started_services
    exit "$code"
}
trap _ci_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
