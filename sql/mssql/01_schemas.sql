-- Schemas: config (metadata), etl (run log), stg (staging), ods (the copy), hist (SCD2 versions of dimensions).
-- Generated from cbm_luigi/store/mssql_scripts.py (CBM_UPDATE_GOLDEN=1 python -m pytest tests/destinations/test_mssql_golden.py); do not edit by hand.
-- Idempotent: safe to run again. Run with sqlcmd -b -i <file> or in SSMS (GO separates the batches).

IF SCHEMA_ID(N'config') IS NULL EXEC(N'CREATE SCHEMA [config]');
GO

IF SCHEMA_ID(N'etl') IS NULL EXEC(N'CREATE SCHEMA [etl]');
GO

IF SCHEMA_ID(N'stg') IS NULL EXEC(N'CREATE SCHEMA [stg]');
GO

IF SCHEMA_ID(N'ods') IS NULL EXEC(N'CREATE SCHEMA [ods]');
GO

IF SCHEMA_ID(N'hist') IS NULL EXEC(N'CREATE SCHEMA [hist]');
GO
