# shellcheck shell=bash
# Sourced by the .ci scripts whose service is one process with a pid file (azurite, kafka):
#   PIDFILE=...; pidfile_control NAME ACTION
# answers `status` (exit 0 when it runs) and `stop` (waits up to 10 s, then SIGKILL) and exits;
# for `start` it returns, and the script goes on to start its service.
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s:0:1}" != Z ]; }  # not a zombie
running() { [ -f "$PIDFILE" ] && alive "$(cat "$PIDFILE")"; }
pidfile_control() {
    local name=$1 pid
    case $2 in
        start) return 0 ;;
        status) running; exit ;;
        stop)
            if running; then
                pid=$(cat "$PIDFILE")
                kill "$pid"
                for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
                if alive "$pid"; then kill -KILL "$pid"; fi
                echo "[$name] stopped"
            fi
            rm -f "$PIDFILE"
            exit 0 ;;
        *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
    esac
}
