DELETE FROM [etl].[ETL_StagingState] WHERE [TableName] = :t
-- params: t

DELETE FROM [etl].[ETL_StagingState] WHERE [TableName] = :t
-- params: t

INSERT INTO [etl].[ETL_StagingState] ([TableName], [Batch], [Mode], [RowsStaged], [SourceClockTs], [RunId], [LoadedTs]) VALUES (:t, :b, :m, :n, :c, :r, :ts)
-- params: b, c, m, n, r, t, ts

INSERT INTO [etl].[ETL_Log] ([LogId], [RunId], [TableName], [Batch], [Mode], [StepName], [Status], [RowsProcessed], [RowsInserted], [RowsUpdated], [RowsUnchanged], [RowsDeleted], [DurationSeconds], [ErrorMessage], [LogTs]) VALUES (:LogId, :RunId, :TableName, :Batch, :Mode, :StepName, :Status, :RowsProcessed, :RowsInserted, :RowsUpdated, :RowsUnchanged, :RowsDeleted, :DurationSeconds, :ErrorMessage, :LogTs)
-- params: Batch, DurationSeconds, ErrorMessage, LogId, LogTs, Mode, RowsDeleted, RowsInserted, RowsProcessed, RowsUnchanged, RowsUpdated, RunId, Status, StepName, TableName
