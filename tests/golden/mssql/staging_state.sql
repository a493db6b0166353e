DELETE FROM [etl].[ETL_StagingState] WHERE [TableName] = :t
-- params: t

DELETE FROM [etl].[ETL_StagingState] WHERE [TableName] = :t
-- params: t

INSERT INTO [etl].[ETL_StagingState] ([TableName], [Batch], [Mode], [RowsStaged], [SourceClockTs], [RunId], [LoadedTs]) VALUES (:t, :b, :m, :n, :c, :r, :ts)
-- params: b, c, m, n, r, t, ts

INSERT INTO [etl].[ETL_Log] ([LogId], [RunId], [TableName], [Batch], [Mode], [StepName], [Status], [RowsProcessed], [RowsInserted], [RowsUpdated], [RowsUnchanged], [DurationSeconds], [ErrorMessage], [LogTs]) VALUES (:LogId, :RunId, :TableName, :Batch, :Mode, :StepName, :Status, :RowsProcessed, :RowsInserted, :RowsUpdated, :RowsUnchanged, :DurationSeconds, :ErrorMessage, :LogTs)
-- params: Batch, DurationSeconds, ErrorMessage, LogId, LogTs, Mode, RowsInserted, RowsProcessed, RowsUnchanged, RowsUpdated, RunId, Status, StepName, TableName
