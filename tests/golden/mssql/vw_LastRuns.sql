CREATE OR ALTER VIEW [etl].[vw_LastRuns] AS
WITH runs AS (
    SELECT [TableName], [RunId], [Batch], MAX([Mode]) AS [Mode],
        MIN([LogTs]) AS [StartedTs], MAX([LogTs]) AS [LastTs],
        SUM(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN 1 ELSE 0 END) AS [NOk],
        SUM(CASE WHEN [Status] = 'failed' THEN 1 ELSE 0 END) AS [NFailed],
        MAX(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN [DurationSeconds] END) AS [Dur],
        MAX(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN [LogTs] END) AS [OkTs],
        MAX(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN [RowsProcessed] END) AS [RowsOk],
        MAX([RowsProcessed]) AS [RowsAny],
        MAX(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN [RowsInserted] END) AS [Ins],
        MAX(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN [RowsUpdated] END) AS [Upd],
        MAX(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN [RowsUnchanged] END) AS [Unch]
    FROM [etl].[ETL_Log]
    GROUP BY [TableName], [RunId], [Batch]
    HAVING SUM(CASE WHEN [Status] = 'skipped' THEN 1 ELSE 0 END) = 0 OR SUM(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN 1 ELSE 0 END) > 0
),
ranked AS (
    SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.[TableName] ORDER BY r.[StartedTs] DESC, r.[LastTs] DESC, r.[RunId] DESC) AS [Rn]
    FROM runs r
),
first_error AS (
    SELECT [TableName], [RunId], [Batch], [ErrorMessage],
        ROW_NUMBER() OVER (PARTITION BY [TableName], [RunId], [Batch] ORDER BY [LogTs], [LogId]) AS [Rn]
    FROM [etl].[ETL_Log] WHERE [Status] = 'failed'
)
SELECT k.[TableName], k.[RunId], k.[Batch], k.[Mode],
    CASE WHEN k.[NOk] > 0 THEN 'success' WHEN k.[NFailed] > 0 THEN 'failed' ELSE 'running' END AS [Status],
    k.[StartedTs],
    CASE WHEN k.[NOk] > 0 OR k.[NFailed] > 0 THEN k.[LastTs] END AS [EndedTs],
    k.[Dur] AS [DurationSeconds],
    COALESCE(k.[RowsOk], k.[RowsAny]) AS [RowsProcessed],
    k.[Ins] AS [RowsInserted], k.[Upd] AS [RowsUpdated], k.[Unch] AS [RowsUnchanged],
    e.[ErrorMessage]
FROM ranked k
LEFT JOIN first_error e ON e.[TableName] = k.[TableName] AND e.[RunId] = k.[RunId] AND (e.[Batch] = k.[Batch] OR (e.[Batch] IS NULL AND k.[Batch] IS NULL)) AND e.[Rn] = 1
WHERE k.[Rn] = 1
