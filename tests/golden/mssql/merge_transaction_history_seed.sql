BEGIN TRANSACTION

SET NOCOUNT ON;
DECLARE @cbm_lock_rc INT;
EXEC @cbm_lock_rc = sp_getapplock @Resource = :lock, @LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = -1;
SET NOCOUNT OFF;
SELECT @cbm_lock_rc AS [rc];
-- params: lock

SELECT [RunId] FROM [etl].[ETL_Markers] WHERE [MarkerId] = :m
-- params: m

SELECT [Batch], [Mode], [RowsStaged], [SourceClockTs] FROM [etl].[ETL_StagingState] WITH (UPDLOCK, HOLDLOCK) WHERE [TableName] = :t
-- params: t

SELECT c.[name], TYPE_NAME(c.[user_type_id]), CASE WHEN c.[max_length] = -1 THEN -1 WHEN TYPE_NAME(c.[user_type_id]) IN (N'nvarchar', N'nchar') THEN c.[max_length] / 2 ELSE c.[max_length] END, c.[precision], c.[scale] FROM sys.columns AS c WHERE c.[object_id] = OBJECT_ID(QUOTENAME(:schema) + N'.' + QUOTENAME(:table), N'U') ORDER BY c.[column_id]
-- params: schema, table

IF OBJECT_ID(N'[ods].[order-line]', N'U') IS NULL
CREATE TABLE [ods].[order-line] (
    [order-num] int NOT NULL,
    [line] int NOT NULL,
    [select] nvarchar(8) NULL,
    [desc] nvarchar(4000) NULL,
    [long-text] nvarchar(max) NULL,
    [price$] decimal(38,10) NULL,
    [qty]]x] decimal(9,2) NULL,
    [rate] float NULL,
    [big] bigint NULL,
    [is-open] bit NULL,
    [ship-date] date NULL,
    [dat-mod] datetime2(3) NULL,
    [stamp-tz] datetimeoffset(3) NULL,
    [stamp-tz_tz_offset] int NULL,
    [blob] varbinary(max) NULL,
    [hashdiff] char(64) NOT NULL,
    [ts_source] datetime2(3) NULL,
    [load_ts] datetime2(3) NOT NULL,
    [etl_batch] nvarchar(64) NULL,
    [etl_deleted_ts] datetime2(3) NULL,
    CONSTRAINT [PK_ods_order-line] PRIMARY KEY CLUSTERED ([order-num], [line])
)

SELECT c.[name], TYPE_NAME(c.[user_type_id]), CASE WHEN c.[max_length] = -1 THEN -1 WHEN TYPE_NAME(c.[user_type_id]) IN (N'nvarchar', N'nchar') THEN c.[max_length] / 2 ELSE c.[max_length] END, c.[precision], c.[scale] FROM sys.columns AS c WHERE c.[object_id] = OBJECT_ID(QUOTENAME(:schema) + N'.' + QUOTENAME(:table), N'U') ORDER BY c.[column_id]
-- params: schema, table

IF SCHEMA_ID(N'hist') IS NULL EXEC(N'CREATE SCHEMA [hist]')

SELECT c.[name], TYPE_NAME(c.[user_type_id]), CASE WHEN c.[max_length] = -1 THEN -1 WHEN TYPE_NAME(c.[user_type_id]) IN (N'nvarchar', N'nchar') THEN c.[max_length] / 2 ELSE c.[max_length] END, c.[precision], c.[scale] FROM sys.columns AS c WHERE c.[object_id] = OBJECT_ID(QUOTENAME(:schema) + N'.' + QUOTENAME(:table), N'U') ORDER BY c.[column_id]
-- params: schema, table

IF OBJECT_ID(N'[hist].[order-line]', N'U') IS NULL
CREATE TABLE [hist].[order-line] (
    [order-num] int NOT NULL,
    [line] int NOT NULL,
    [select] nvarchar(8) NULL,
    [desc] nvarchar(4000) NULL,
    [long-text] nvarchar(max) NULL,
    [price$] decimal(38,10) NULL,
    [qty]]x] decimal(9,2) NULL,
    [rate] float NULL,
    [big] bigint NULL,
    [is-open] bit NULL,
    [ship-date] date NULL,
    [dat-mod] datetime2(3) NULL,
    [stamp-tz] datetimeoffset(3) NULL,
    [stamp-tz_tz_offset] int NULL,
    [blob] varbinary(max) NULL,
    [hashdiff] char(64) NOT NULL,
    [ts_source] datetime2(3) NULL,
    [load_ts] datetime2(3) NOT NULL,
    [etl_batch] nvarchar(64) NULL,
    [valid_from] datetime2(3) NOT NULL,
    [valid_to] datetime2(3) NULL,
    [is_current] bit NOT NULL,
    CONSTRAINT [PK_hist_order-line] PRIMARY KEY CLUSTERED ([order-num], [line], [valid_from])
)

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE [name] = N'UX_hist_order-line_current' AND [object_id] = OBJECT_ID(N'[hist].[order-line]'))
CREATE UNIQUE NONCLUSTERED INDEX [UX_hist_order-line_current] ON [hist].[order-line] ([order-num], [line]) WHERE [is_current] = 1

SELECT MAX(c.[at]) FROM (SELECT MAX([valid_from]) AS [at] FROM [hist].[order-line] UNION ALL SELECT MAX([valid_to]) FROM [hist].[order-line]) AS c

SET NOCOUNT ON;
DECLARE @actions TABLE ([action] nvarchar(10) NOT NULL);
MERGE INTO [ods].[order-line] WITH (HOLDLOCK) AS o
USING [stg].[order-line] AS s
    ON o.[order-num] = s.[order-num] AND o.[line] = s.[line]
WHEN MATCHED AND o.[hashdiff] <> s.[hashdiff] THEN
    UPDATE SET
        [select] = s.[select],
        [desc] = s.[desc],
        [long-text] = s.[long-text],
        [price$] = s.[price$],
        [qty]]x] = s.[qty]]x],
        [rate] = s.[rate],
        [big] = s.[big],
        [is-open] = s.[is-open],
        [ship-date] = s.[ship-date],
        [dat-mod] = s.[dat-mod],
        [stamp-tz] = s.[stamp-tz],
        [stamp-tz_tz_offset] = s.[stamp-tz_tz_offset],
        [blob] = s.[blob],
        [hashdiff] = s.[hashdiff],
        [ts_source] = s.[ts_source],
        [load_ts] = s.[load_ts],
        [etl_batch] = :batch
WHEN NOT MATCHED BY TARGET THEN
    INSERT ([order-num], [line], [select], [desc], [long-text], [price$], [qty]]x], [rate], [big], [is-open], [ship-date], [dat-mod], [stamp-tz], [stamp-tz_tz_offset], [blob], [hashdiff], [ts_source], [load_ts], [etl_batch])
    VALUES (s.[order-num], s.[line], s.[select], s.[desc], s.[long-text], s.[price$], s.[qty]]x], s.[rate], s.[big], s.[is-open], s.[ship-date], s.[dat-mod], s.[stamp-tz], s.[stamp-tz_tz_offset], s.[blob], s.[hashdiff], s.[ts_source], s.[load_ts], :batch)
OUTPUT $action INTO @actions;
SET NOCOUNT OFF;
SELECT
    COALESCE(SUM(CASE WHEN [action] = N'INSERT' THEN 1 ELSE 0 END), 0) AS [inserted],
    COALESCE(SUM(CASE WHEN [action] = N'UPDATE' THEN 1 ELSE 0 END), 0) AS [updated]
FROM @actions;
-- params: batch

UPDATE o SET o.[etl_deleted_ts] = NULL FROM [ods].[order-line] AS o WHERE o.[etl_deleted_ts] IS NOT NULL AND EXISTS (SELECT 1 FROM [stg].[order-line] AS s WHERE s.[order-num] = o.[order-num] AND s.[line] = o.[line])

INSERT INTO [hist].[order-line] ([order-num], [line], [select], [desc], [long-text], [price$], [qty]]x], [rate], [big], [is-open], [ship-date], [dat-mod], [stamp-tz], [stamp-tz_tz_offset], [blob], [hashdiff], [ts_source], [load_ts], [etl_batch], [valid_from], [valid_to], [is_current])
SELECT o.[order-num], o.[line], o.[select], o.[desc], o.[long-text], o.[price$], o.[qty]]x], o.[rate], o.[big], o.[is-open], o.[ship-date], o.[dat-mod], o.[stamp-tz], o.[stamp-tz_tz_offset], o.[blob], o.[hashdiff], o.[ts_source], o.[load_ts], :batch, :ts, NULL, 1
FROM [ods].[order-line] o
WHERE o.[etl_deleted_ts] IS NULL
-- params: batch, ts

UPDATE [config].[ETL_Tables] SET [LastSuccessTs] = :ts WHERE [TableName] = :t AND ([LastSuccessTs] IS NULL OR [LastSuccessTs] < :ts)
-- params: t, ts

INSERT INTO [etl].[ETL_Markers] ([MarkerId], [TableName], [Batch], [Mode], [RunId], [CompletedTs]) VALUES (:m, :t, :b, :mode, :r, :ts)
-- params: b, m, mode, r, t, ts

SELECT [LogTs], [DurationSeconds] FROM [etl].[ETL_Log] WHERE [RunId] = :r AND [TableName] = :t AND [Batch] = :b
-- params: b, r, t

INSERT INTO [etl].[ETL_Log] ([LogId], [RunId], [TableName], [Batch], [Mode], [StepName], [Status], [RowsProcessed], [RowsInserted], [RowsUpdated], [RowsUnchanged], [RowsDeleted], [DurationSeconds], [ErrorMessage], [LogTs]) VALUES (:LogId, :RunId, :TableName, :Batch, :Mode, :StepName, :Status, :RowsProcessed, :RowsInserted, :RowsUpdated, :RowsUnchanged, :RowsDeleted, :DurationSeconds, :ErrorMessage, :LogTs)
-- params: Batch, DurationSeconds, ErrorMessage, LogId, LogTs, Mode, RowsDeleted, RowsInserted, RowsProcessed, RowsUnchanged, RowsUpdated, RunId, Status, StepName, TableName

INSERT INTO [etl].[ETL_Log] ([LogId], [RunId], [TableName], [Batch], [Mode], [StepName], [Status], [RowsProcessed], [RowsInserted], [RowsUpdated], [RowsUnchanged], [RowsDeleted], [DurationSeconds], [ErrorMessage], [LogTs]) VALUES (:LogId, :RunId, :TableName, :Batch, :Mode, :StepName, :Status, :RowsProcessed, :RowsInserted, :RowsUpdated, :RowsUnchanged, :RowsDeleted, :DurationSeconds, :ErrorMessage, :LogTs)
-- params: Batch, DurationSeconds, ErrorMessage, LogId, LogTs, Mode, RowsDeleted, RowsInserted, RowsProcessed, RowsUnchanged, RowsUpdated, RunId, Status, StepName, TableName

COMMIT
