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
IF OBJECT_ID(N'[config].[ETL_Tables]', N'U') IS NULL
CREATE TABLE [config].[ETL_Tables] (
    [TableName] nvarchar(128) NOT NULL,
    [SqlName] nvarchar(128) NOT NULL,
    [DestinationTable] nvarchar(256) NOT NULL,
    [PrimaryKeyCols] nvarchar(1000) NOT NULL,
    [HasTimestamps] bit NOT NULL,
    [DateModifCol] nvarchar(128) NULL,
    [DateModifPrecision] nvarchar(10) NULL,
    [IsDimension] bit NOT NULL,
    [IsFact] bit NOT NULL,
    [LookbackInterval] nvarchar(20) NULL,
    [FilterClause] nvarchar(4000) NULL,
    [LastSuccessTs] datetime2(3) NULL,
    [Notes] nvarchar(4000) NULL,
    [PriorityTier] nvarchar(10) NULL,
    [IsActive] bit NOT NULL,
    [SLAHours] float NULL,
    [DeleteDetection] bit NULL,
    [DeleteGuardPct] float NULL,
    [LastProfilingTs] datetime2(3) NULL,
    [CreatedTs] datetime2(3) NULL,
    [UpdatedTs] datetime2(3) NULL,
    [DeleteScan] bit NULL,
    [KeepHistory] bit NULL,
    [TypeChangePolicy] nvarchar(10) NULL,
    [WidthPolicy] nvarchar(10) NULL,
    [OutOfRangeDates] nvarchar(10) NULL,
    [SplitExtents] bit NULL,
    [ExtractPartitions] int NULL,
    CONSTRAINT [PK_config_ETL_Tables] PRIMARY KEY CLUSTERED ([TableName])
);
GO
IF OBJECT_ID(N'[config].[ETL_Columns]', N'U') IS NULL
CREATE TABLE [config].[ETL_Columns] (
    [TableName] nvarchar(128) NOT NULL,
    [ColumnName] nvarchar(128) NOT NULL,
    [SqlName] nvarchar(128) NOT NULL,
    [SourceExpression] nvarchar(600) NULL,
    [DataType] nvarchar(64) NULL,
    [LogicalType] nvarchar(20) NULL,
    [CharMaxLength] int NULL,
    [NumericPrecision] int NULL,
    [NumericScale] int NULL,
    [IsNullable] bit NULL,
    [OrdinalPosition] int NULL,
    [Extent] int NULL,
    [IsExcluded] bit NOT NULL,
    [Notes] nvarchar(4000) NULL,
    [IsInSource] bit NULL,
    [FirstSeenTs] datetime2(3) NULL,
    [LastSyncTs] datetime2(3) NULL,
    CONSTRAINT [PK_config_ETL_Columns] PRIMARY KEY CLUSTERED ([TableName], [ColumnName])
);
GO
IF OBJECT_ID(N'[config].[ETL_Dependencies]', N'U') IS NULL
CREATE TABLE [config].[ETL_Dependencies] (
    [TableName] nvarchar(128) NOT NULL,
    [DependsOn] nvarchar(128) NOT NULL,
    [IsActive] bit NOT NULL,
    CONSTRAINT [PK_config_ETL_Dependencies] PRIMARY KEY CLUSTERED ([TableName], [DependsOn])
);
GO
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
)
