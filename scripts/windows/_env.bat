@rem Shared by the cbm-luigi .bat scripts (CALLed, not run): project root, Python, Luigi config.
@rem The checkout is the parent of scripts\: every script runs from it, so luigi.cfg, .env and the relative
@rem paths in them (data\...) resolve the same way from the Task Scheduler or a console.
for %%I in ("%~dp0..\..") do set "CBM_ROOT=%%~fI"
cd /d "%CBM_ROOT%" || exit /b 40
if defined CBM_PYTHON (
    set "PY=%CBM_PYTHON%"
) else if exist "%CBM_ROOT%\.venv\Scripts\python.exe" (
    set "PY=%CBM_ROOT%\.venv\Scripts\python.exe"
) else (
    set "PY=python"
)
if not defined LUIGI_CONFIG_PATH set "LUIGI_CONFIG_PATH=%CBM_ROOT%\luigi.cfg"
set "PYTHONPATH=%CBM_ROOT%;%PYTHONPATH%"
set "CBM_SCHED_ARGS="
if defined CBM_SCHEDULER_HOST (
    if not defined CBM_SCHEDULER_PORT set "CBM_SCHEDULER_PORT=8082"
)
if defined CBM_SCHEDULER_HOST set "CBM_SCHED_ARGS=--scheduler-host %CBM_SCHEDULER_HOST% --scheduler-port %CBM_SCHEDULER_PORT%"
exit /b 0
