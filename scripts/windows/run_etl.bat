@echo off
rem Load one table (or all) now.  Exit code: 0 loaded, 1 a table failed or did not run, 2 configuration error.
rem   scripts\windows\run_etl.bat TABLE MODE [cbm-etl run options...]
rem   scripts\windows\run_etl.bat produit incremental
rem   scripts\windows\run_etl.bat all full --continue-on-error
rem   scripts\windows\run_etl.bat lignecli full --batch-id 2026-11-25T14
rem Environment: CBM_WORKERS (1), CBM_SCHEDULER_HOST / CBM_SCHEDULER_PORT (central scheduler), CBM_* settings
rem (or .env / luigi.cfg [cbm]).  Logs: one file per run under CBM_LOG_DIR (data\logs).
setlocal
if "%~2"=="" (
    echo usage: %~nx0 TABLE^|all full^|incremental [cbm-etl run options...] 1>&2
    exit /b 2
)
set "TABLE=%~1"
set "MODE=%~2"
if /i not "%MODE%"=="full" if /i not "%MODE%"=="incremental" (
    echo %~nx0: MODE must be full or incremental, not "%MODE%" 1>&2
    exit /b 2
)
shift
shift
set "REST="
:collect
if "%~1"=="" goto run
set "REST=%REST% %1"
shift
goto collect
:run
call "%~dp0_env.bat" || exit /b 40
if not defined CBM_WORKERS set "CBM_WORKERS=1"
set "WHAT=%TABLE%"
if /i "%TABLE%"=="all" set "WHAT=--all"
"%PY%" -m cbm_luigi.cli run %WHAT% --mode %MODE% --workers %CBM_WORKERS% %CBM_SCHED_ARGS% %REST%
exit /b %ERRORLEVEL%
