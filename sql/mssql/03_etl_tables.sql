-- etl tables: run log, markers, staging state, alerts, validation, quality.
-- Generated from cbm_luigi/store/mssql_scripts.py (CBM_UPDATE_GOLDEN=1 python -m pytest tests/destinations/test_mssql_golden.py); do not edit by hand.
-- Idempotent: safe to run again. Run with sqlcmd -b -i <file> or in SSMS (GO separates the batches).

IF OBJECT_ID(N'[etl].[ETL_Log]', N'U') IS NULL
CREATE TABLE [etl].[ETL_Log] (
    [LogId] nvarchar(36) NOT NULL,
    [RunId] nvarchar(36) NOT NULL,
    [TableName] nvarchar(128) NOT NULL,
    [Batch] nvarchar(64) NULL,
    [Mode] nvarchar(12) NULL,
    [StepName] nvarchar(32) NOT NULL,
    [Status] nvarchar(16) NOT NULL,
    [RowsProcessed] bigint NULL,
    [RowsInserted] bigint NULL,
    [RowsUpdated] bigint NULL,
    [RowsUnchanged] bigint NULL,
    [RowsDeleted] bigint NULL,
    [DurationSeconds] float NULL,
    [ErrorMessage] nvarchar(4000) NULL,
    [LogTs] datetime2(3) NOT NULL,
    CONSTRAINT [PK_etl_ETL_Log] PRIMARY KEY CLUSTERED ([LogId])
);
GO

IF OBJECT_ID(N'[etl].[ETL_Markers]', N'U') IS NULL
CREATE TABLE [etl].[ETL_Markers] (
    [MarkerId] nvarchar(300) NOT NULL,
    [TableName] nvarchar(128) NOT NULL,
    [Batch] nvarchar(64) NOT NULL,
    [Mode] nvarchar(12) NOT NULL,
    [RunId] nvarchar(36) NULL,
    [CompletedTs] datetime2(3) NOT NULL,
    CONSTRAINT [PK_etl_ETL_Markers] PRIMARY KEY CLUSTERED ([MarkerId])
);
GO

IF OBJECT_ID(N'[etl].[ETL_StagingState]', N'U') IS NULL
CREATE TABLE [etl].[ETL_StagingState] (
    [TableName] nvarchar(128) NOT NULL,
    [Batch] nvarchar(64) NOT NULL,
    [Mode] nvarchar(12) NOT NULL,
    [RowsStaged] bigint NULL,
    [SourceClockTs] datetime2(3) NULL,
    [RunId] nvarchar(36) NULL,
    [LoadedTs] datetime2(3) NOT NULL,
    CONSTRAINT [PK_etl_ETL_StagingState] PRIMARY KEY CLUSTERED ([TableName])
);
GO

IF OBJECT_ID(N'[etl].[ETL_Alerts]', N'U') IS NULL
CREATE TABLE [etl].[ETL_Alerts] (
    [AlertId] nvarchar(36) NOT NULL,
    [AlertType] nvarchar(32) NOT NULL,
    [Severity] nvarchar(16) NOT NULL,
    [TableName] nvarchar(128) NULL,
    [RunId] nvarchar(36) NULL,
    [Channel] nvarchar(32) NOT NULL,
    [Title] nvarchar(400) NULL,
    [Message] nvarchar(4000) NULL,
    [Delivered] bit NULL,
    [DeliveryNote] nvarchar(400) NULL,
    [SentTs] datetime2(3) NOT NULL,
    CONSTRAINT [PK_etl_ETL_Alerts] PRIMARY KEY CLUSTERED ([AlertId])
);
GO

IF OBJECT_ID(N'[etl].[Validation_Log]', N'U') IS NULL
CREATE TABLE [etl].[Validation_Log] (
    [ValidationId] nvarchar(36) NOT NULL,
    [RunId] nvarchar(36) NULL,
    [TableName] nvarchar(128) NOT NULL,
    [SourceRows] bigint NULL,
    [TargetRows] bigint NULL,
    [MissingInTarget] bigint NULL,
    [ExtraInTarget] bigint NULL,
    [ContentMismatches] bigint NULL,
    [Status] nvarchar(16) NOT NULL,
    [Details] nvarchar(4000) NULL,
    [DurationSeconds] float NULL,
    [ValidatedTs] datetime2(3) NOT NULL,
    CONSTRAINT [PK_etl_Validation_Log] PRIMARY KEY CLUSTERED ([ValidationId])
);
GO

IF OBJECT_ID(N'[etl].[DataQuality_Log]', N'U') IS NULL
CREATE TABLE [etl].[DataQuality_Log] (
    [CheckId] nvarchar(36) NOT NULL,
    [RunId] nvarchar(36) NULL,
    [TableName] nvarchar(128) NOT NULL,
    [Batch] nvarchar(64) NULL,
    [RuleName] nvarchar(128) NOT NULL,
    [RuleType] nvarchar(32) NOT NULL,
    [ColumnName] nvarchar(128) NULL,
    [Severity] nvarchar(16) NOT NULL,
    [Passed] bit NOT NULL,
    [FailedRows] bigint NULL,
    [Details] nvarchar(4000) NULL,
    [CheckedTs] datetime2(3) NOT NULL,
    CONSTRAINT [PK_etl_DataQuality_Log] PRIMARY KEY CLUSTERED ([CheckId])
);
GO
