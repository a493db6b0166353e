#!/usr/bin/env bash
# Load one table (or all) now.  The exit code is cbm-etl run's: 0 loaded, 1 a table failed or did not run,
# 2 a configuration error.
#
#   scripts/run_etl.sh TABLE MODE [cbm-etl run options...]
#   scripts/run_etl.sh produit incremental
#   scripts/run_etl.sh lignecli full --batch-id 2026-11-25T14
#   scripts/run_etl.sh all incremental --continue-on-error
#
# Environment: CBM_WORKERS (1), CBM_SCHEDULER_HOST / CBM_SCHEDULER_PORT (use the central scheduler), and every
# CBM_* setting (or .env / luigi.cfg [cbm]).  Logs: one file per run under CBM_LOG_DIR (data/logs).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

if [ $# -lt 2 ]; then
    echo "usage: $0 TABLE|all full|incremental [cbm-etl run options...]" >&2
    exit 2
fi
TABLE="$1"
MODE="$2"
shift 2
case "$MODE" in
    full|incremental) ;;
    *) echo "$0: MODE must be full or incremental, not '$MODE'" >&2; exit 2 ;;
esac
if [ "$TABLE" = "all" ] || [ "$TABLE" = "ALL" ]; then
    WHAT=(--all)
else
    WHAT=("$TABLE")
fi
# shellcheck disable=SC2046  # scheduler_args is word-split on purpose
"$PY" -m cbm_luigi.cli run "${WHAT[@]}" --mode "$MODE" --workers "${CBM_WORKERS:-1}" $(scheduler_args) "$@"
exit $?
