-- Least-privilege roles: cbm_etl (nightly loads) and cbm_etl_deploy (also init-db). See sql/mssql/README.md.
-- Generated from cbm_luigi/store/mssql_scripts.py (CBM_UPDATE_GOLDEN=1 python -m pytest tests/destinations/test_mssql_golden.py); do not edit by hand.
-- Idempotent: safe to run again. Run with sqlcmd -b -i <file> or in SSMS (GO separates the batches).

IF DATABASE_PRINCIPAL_ID(N'cbm_etl') IS NULL EXEC(N'CREATE ROLE [cbm_etl]');
GO

IF DATABASE_PRINCIPAL_ID(N'cbm_etl_deploy') IS NULL EXEC(N'CREATE ROLE [cbm_etl_deploy]');
GO

GRANT CREATE TABLE TO [cbm_etl];
GO

GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::[config] TO [cbm_etl];
GO

GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::[etl] TO [cbm_etl];
GO

GRANT SELECT, INSERT, ALTER ON SCHEMA::[stg] TO [cbm_etl];
GO

GRANT SELECT, INSERT, UPDATE, ALTER ON SCHEMA::[ods] TO [cbm_etl];
GO

GRANT SELECT, INSERT, UPDATE, ALTER ON SCHEMA::[hist] TO [cbm_etl];
GO

ALTER ROLE [cbm_etl] ADD MEMBER [cbm_etl_deploy];
GO

GRANT CREATE VIEW TO [cbm_etl_deploy];
GO

GRANT ALTER ON SCHEMA::[config] TO [cbm_etl_deploy];
GO

GRANT ALTER ON SCHEMA::[etl] TO [cbm_etl_deploy];
GO
