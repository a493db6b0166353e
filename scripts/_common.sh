# Shared by the cbm-luigi shell scripts (sourced, not run): project root, Python, Luigi config.
# ROOT is the checkout (the parent of scripts/); every script runs from it, so luigi.cfg, .env and the relative
# paths in them (data/...) resolve the same way whether cron, systemd or a person starts the script.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 40
# The project's virtualenv when there is one, else CBM_PYTHON, else python3 on PATH.
if [ -n "${CBM_PYTHON:-}" ]; then
    PY="$CBM_PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PY="$ROOT/.venv/bin/python"
else
    PY="$(command -v python3 || command -v python)"
fi
export LUIGI_CONFIG_PATH="${LUIGI_CONFIG_PATH:-$ROOT/luigi.cfg}"
# Run the package of this checkout (python -m from ROOT), whatever else is installed.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# --scheduler-host/--scheduler-port when CBM_SCHEDULER_HOST is set (central scheduler), else a local scheduler.
scheduler_args() {
    if [ -n "${CBM_SCHEDULER_HOST:-}" ]; then
        echo "--scheduler-host ${CBM_SCHEDULER_HOST} --scheduler-port ${CBM_SCHEDULER_PORT:-8082}"
    fi
}
