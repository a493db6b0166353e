#!/usr/bin/env bash
# The nightly load, as cron runs it: every active table, incremental, by priority tier (critical first; if a
# critical table fails nothing else starts, unless CBM_CONTINUE_ON_ERROR=1), then the health check (alerts)
# and the cache clean-up.  The exit code is the load's: 0 every table loaded, 1 a table failed or did not run,
# 2 a configuration error, 10 another daily run still holds the lock.
#
#   scripts/daily_etl.sh [cbm-etl run options...]        # e.g. --batch-id 2026-11-25
#
# Environment: CBM_WORKERS (4), CBM_SCHEDULER_HOST / CBM_SCHEDULER_PORT (central scheduler, e.g. the one
# scripts/start_luigid.sh started; unset = local scheduler), CBM_CONTINUE_ON_ERROR (0), CBM_DAILY_MODE
# (incremental), CBM_DAILY_HEALTH (1: run `cbm-etl health` after the load), CBM_CACHE_RETENTION_DAYS (7: remove
# older cached extracts; empty = keep).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

mkdir -p "$ROOT/data"
# One nightly run at a time (a slow night must not overlap the next one).
exec 9>"$ROOT/data/daily_etl.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    echo "$(date '+%F %T') daily_etl: another daily run is still running (lock data/daily_etl.lock)" >&2
    exit 10
fi

EXTRA=()
if [ "${CBM_CONTINUE_ON_ERROR:-0}" = "1" ]; then
    EXTRA+=(--continue-on-error)
fi
echo "$(date '+%F %T') daily_etl: start (workers ${CBM_WORKERS:-4}${CBM_SCHEDULER_HOST:+, scheduler $CBM_SCHEDULER_HOST})"
# shellcheck disable=SC2046  # scheduler_args is word-split on purpose
"$PY" -m cbm_luigi.cli run --all --mode "${CBM_DAILY_MODE:-incremental}" --workers "${CBM_WORKERS:-4}" \
    $(scheduler_args) "${EXTRA[@]}" "$@"
rc=$?

if [ "${CBM_DAILY_HEALTH:-1}" = "1" ]; then
    "$PY" -m cbm_luigi.cli health || echo "$(date '+%F %T') daily_etl: health check failed (exit $?)" >&2
fi
if [ -n "${CBM_CACHE_RETENTION_DAYS-7}" ]; then
    "$PY" -m cbm_luigi.cli cleanup-cache --days "${CBM_CACHE_RETENTION_DAYS-7}" -q \
        || echo "$(date '+%F %T') daily_etl: cache clean-up failed" >&2
fi
echo "$(date '+%F %T') daily_etl: done, exit code $rc"
exit $rc
