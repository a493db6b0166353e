@echo off
rem Luigi central scheduler and web view (http://127.0.0.1:8082), in the FOREGROUND: luigid's --background
rem mode is Unix-only.  Keep this window open, or run it from the Task Scheduler (cbm-luigid-task.xml, at
rem start-up, no time limit).
rem Environment: CBM_LUIGID_ADDRESS (127.0.0.1; 0.0.0.0 to serve other machines), CBM_LUIGID_PORT (8082),
rem CBM_LUIGID_DIR (data\luigid: state file), CBM_LUIGID_LOG_DIR (data\logs\luigid).
setlocal
call "%~dp0_env.bat" || exit /b 40
if not defined CBM_LUIGID_ADDRESS set "CBM_LUIGID_ADDRESS=127.0.0.1"
if not defined CBM_LUIGID_PORT set "CBM_LUIGID_PORT=8082"
if not defined CBM_LUIGID_DIR set "CBM_LUIGID_DIR=%CBM_ROOT%\data\luigid"
if not defined CBM_LUIGID_LOG_DIR set "CBM_LUIGID_LOG_DIR=%CBM_ROOT%\data\logs\luigid"
if not exist "%CBM_LUIGID_DIR%" mkdir "%CBM_LUIGID_DIR%"
if not exist "%CBM_LUIGID_LOG_DIR%" mkdir "%CBM_LUIGID_LOG_DIR%"
echo luigid on http://%CBM_LUIGID_ADDRESS%:%CBM_LUIGID_PORT% (state %CBM_LUIGID_DIR%, logs %CBM_LUIGID_LOG_DIR%)
"%PY%" -c "import sys; from luigi.cmdline import luigid; luigid(sys.argv[1:])" --address %CBM_LUIGID_ADDRESS% --port %CBM_LUIGID_PORT% --state-path "%CBM_LUIGID_DIR%\luigi-state.pickle" --logdir "%CBM_LUIGID_LOG_DIR%"
exit /b %ERRORLEVEL%
