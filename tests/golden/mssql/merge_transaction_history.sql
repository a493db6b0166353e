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

SELECT c.[name], TYPE_NAME(c.[user_type_id]), CASE WHEN c.[max_length] = -1 THEN -1 WHEN TYPE_NAME(c.[user_type_id]) IN (N'nvarchar', N'nchar') THEN c.[max_length] / 2 ELSE c.[max_length] END, c.[precision], c.[scale] FROM sys.columns AS c WHERE c.[object_id] = OBJECT_ID(QUOTENAME(:schema) + N'.' + QUOTENAME(:table), N'U') ORDER BY c.[column_id]
-- params: schema, table

SELECT c.[name], TYPE_NAME(c.[user_type_id]), CASE WHEN c.[max_length] = -1 THEN -1 WHEN TYPE_NAME(c.[user_type_id]) IN (N'nvarchar', N'nchar') THEN c.[max_length] / 2 ELSE c.[max_length] END, c.[precision], c.[scale] FROM sys.columns AS c WHERE c.[object_id] = OBJECT_ID(QUOTENAME(:schema) + N'.' + QUOTENAME(:table), N'U') ORDER BY c.[column_id]
-- params: schema, table

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

UPDATE h SET h.[valid_to] = :ts, h.[is_current] = 0
FROM [hist].[order-line] AS h
WHERE h.[is_current] = 1 AND EXISTS (SELECT 1 FROM [stg].[order-line] AS s WHERE s.[order-num] = h.[order-num] AND s.[line] = h.[line] AND s.[hashdiff] <> h.[hashdiff])
-- params: ts

INSERT INTO [hist].[order-line] ([order-num], [line], [select], [desc], [long-text], [price$], [qty]]x], [rate], [big], [is-open], [ship-date], [dat-mod], [stamp-tz], [stamp-tz_tz_offset], [blob], [hashdiff], [ts_source], [load_ts], [etl_batch], [valid_from], [valid_to], [is_current])
SELECT s.[order-num], s.[line], s.[select], s.[desc], s.[long-text], s.[price$], s.[qty]]x], s.[rate], s.[big], s.[is-open], s.[ship-date], s.[dat-mod], s.[stamp-tz], s.[stamp-tz_tz_offset], s.[blob], s.[hashdiff], s.[ts_source], s.[load_ts], :batch, :ts, NULL, 1
FROM [stg].[order-line] s
WHERE NOT EXISTS (SELECT 1 FROM [hist].[order-line] h WHERE h.[order-num] = s.[order-num] AND h.[line] = s.[line] AND h.[is_current] = 1)
AND NOT EXISTS (SELECT 1 FROM [ods].[order-line] o WHERE o.[order-num] = s.[order-num] AND o.[line] = s.[line] AND o.[etl_deleted_ts] IS NOT NULL)
-- params: batch, ts

UPDATE h SET h.[valid_to] = :ts, h.[is_current] = 0
FROM [hist].[order-line] AS h
WHERE h.[is_current] = 1 AND EXISTS (SELECT 1 FROM [ods].[order-line] AS o WHERE o.[order-num] = h.[order-num] AND o.[line] = h.[line] AND o.[etl_deleted_ts] IS NOT NULL)
-- params: ts

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
