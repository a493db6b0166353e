#!/usr/bin/env bash
# Start (or stop, or check) the Luigi central scheduler and its web view.
#
#   scripts/start_luigid.sh              # start in the background: http://127.0.0.1:8082
#   scripts/start_luigid.sh status       # running or not (exit 0 / 1)
#   scripts/start_luigid.sh stop
#   scripts/start_luigid.sh foreground   # for systemd / supervisors: stays attached
#
# Environment: CBM_LUIGID_ADDRESS (127.0.0.1; 0.0.0.0 to serve other machines), CBM_LUIGID_PORT (8082),
# CBM_LUIGID_DIR (data/luigid: state file luigi-state.pickle and luigid.pid), CBM_LUIGID_LOG_DIR
# (data/logs/luigid).  luigid reads luigi.cfg of this checkout: [scheduler] and [resources] (the source
# connection cap and the single-writer target) apply to every worker that connects.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

ADDRESS="${CBM_LUIGID_ADDRESS:-127.0.0.1}"
PORT="${CBM_LUIGID_PORT:-8082}"
STATE_DIR="${CBM_LUIGID_DIR:-$ROOT/data/luigid}"
LOG_DIR="${CBM_LUIGID_LOG_DIR:-$ROOT/data/logs/luigid}"
PIDFILE="$STATE_DIR/luigid.pid"
mkdir -p "$STATE_DIR" "$LOG_DIR"

running_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

LUIGID=("$PY" -c 'import sys; from luigi.cmdline import luigid; luigid(sys.argv[1:])'
        --address "$ADDRESS" --port "$PORT" --state-path "$STATE_DIR/luigi-state.pickle" --logdir "$LOG_DIR")

answers() {
    "$PY" - "$ADDRESS" "$PORT" <<'PYEOF'
import sys, urllib.request
host = "127.0.0.1" if sys.argv[1] in ("0.0.0.0", "") else sys.argv[1]
try:
    urllib.request.urlopen(f"http://{host}:{sys.argv[2]}/api/task_list?data=%7B%22status%22%3A%22RUNNING%22%7D", timeout=2)
except Exception:
    sys.exit(1)
PYEOF
}

case "${1:-start}" in
    start)
        if pid="$(running_pid)"; then
            echo "luigid already running (pid $pid) on http://$ADDRESS:$PORT"
            exit 0
        fi
        nohup "${LUIGID[@]}" >>"$LOG_DIR/luigid.out" 2>&1 </dev/null &
        echo $! >"$PIDFILE"
        for _ in $(seq 1 60); do
            if answers; then
                echo "luigid started (pid $(cat "$PIDFILE")): http://$ADDRESS:$PORT  state $STATE_DIR  logs $LOG_DIR"
                exit 0
            fi
            if ! running_pid >/dev/null; then
                echo "luigid exited at start; see $LOG_DIR/luigid.out" >&2
                tail -n 20 "$LOG_DIR/luigid.out" >&2
                rm -f "$PIDFILE"
                exit 1
            fi
            sleep 0.5
        done
        echo "luigid (pid $(cat "$PIDFILE")) does not answer on port $PORT yet; see $LOG_DIR/luigid.out" >&2
        exit 1
        ;;
    foreground)
        echo $$ >"$PIDFILE"
        exec "${LUIGID[@]}"
        ;;
    status)
        if pid="$(running_pid)"; then
            echo "luigid running (pid $pid) on http://$ADDRESS:$PORT"
            exit 0
        fi
        echo "luigid not running"
        exit 1
        ;;
    stop)
        if pid="$(running_pid)"; then
            kill "$pid"
            for _ in $(seq 1 40); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.25
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            rm -f "$PIDFILE"
            echo "luigid stopped (pid $pid)"
        else
            echo "luigid not running"
        fi
        ;;
    restart)
        "$0" stop
        exec "$0" start
        ;;
    *)
        echo "usage: $0 [start|stop|status|restart|foreground]" >&2
        exit 2
        ;;
esac
