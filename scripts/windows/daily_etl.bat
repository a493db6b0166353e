@echo off
rem The nightly load, as the Task Scheduler runs it (cbm-etl-daily-task.xml): every active table, incremental,
rem critical tier first (if a critical table fails nothing else starts, unless CBM_CONTINUE_ON_ERROR=1), then
rem the health check (alerts) and the cache clean-up.  Exit code: the load's (0 all loaded, 1 a table failed or
rem did not run, 2 configuration error).  The task definition refuses to start a second instance.
rem Environment: CBM_WORKERS (4), CBM_SCHEDULER_HOST / CBM_SCHEDULER_PORT (central scheduler started by
rem start_luigid.bat; unset = local scheduler), CBM_DAILY_MODE (incremental), CBM_DAILY_HEALTH (1),
rem CBM_CACHE_RETENTION_DAYS (7).
setlocal
call "%~dp0_env.bat" || exit /b 40
if not defined CBM_WORKERS set "CBM_WORKERS=4"
if not defined CBM_DAILY_MODE set "CBM_DAILY_MODE=incremental"
if not defined CBM_DAILY_HEALTH set "CBM_DAILY_HEALTH=1"
if not defined CBM_CACHE_RETENTION_DAYS set "CBM_CACHE_RETENTION_DAYS=7"
set "EXTRA="
if "%CBM_CONTINUE_ON_ERROR%"=="1" set "EXTRA=--continue-on-error"
echo %DATE% %TIME% daily_etl: start (workers %CBM_WORKERS%)
"%PY%" -m cbm_luigi.cli run --all --mode %CBM_DAILY_MODE% --workers %CBM_WORKERS% %CBM_SCHED_ARGS% %EXTRA% %*
set "RC=%ERRORLEVEL%"
if "%CBM_DAILY_HEALTH%"=="1" "%PY%" -m cbm_luigi.cli health
"%PY%" -m cbm_luigi.cli cleanup-cache --days %CBM_CACHE_RETENTION_DAYS% -q
echo %DATE% %TIME% daily_etl: done, exit code %RC%
exit /b %RC%
