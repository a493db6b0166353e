-- config tables: which tables to load, their columns and dependencies.
-- Generated from cbm_luigi/store/mssql_scripts.py (CBM_UPDATE_GOLDEN=1 python -m pytest tests/destinations/test_mssql_golden.py); do not edit by hand.
-- Idempotent: safe to run again. Run with sqlcmd -b -i <file> or in SSMS (GO separates the batches).

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
