CREATE OR ALTER VIEW [etl].[vw_TablePerformance] AS
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
    WHERE [LogTs] >= DATEADD(DAY, -7, SYSDATETIME())
    GROUP BY [TableName], [RunId], [Batch]
    HAVING SUM(CASE WHEN [Status] = 'skipped' THEN 1 ELSE 0 END) = 0 OR SUM(CASE WHEN [StepName] = 'flow_complete' AND [Status] = 'success' THEN 1 ELSE 0 END) > 0
),
ranked AS (
    SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.[TableName], CASE WHEN r.[NOk] > 0 THEN 1 ELSE 0 END ORDER BY r.[OkTs] DESC, r.[RunId] DESC) AS [Rn]
    FROM runs r
)
SELECT r.[TableName], COUNT(*) AS [Runs],
    SUM(CASE WHEN r.[NOk] > 0 THEN 1 ELSE 0 END) AS [Successes],
    SUM(CASE WHEN NOT (r.[NOk] > 0) AND r.[NFailed] > 0 THEN 1 ELSE 0 END) AS [Failures],
    AVG(CASE WHEN r.[NOk] > 0 THEN r.[Dur] END) AS [AvgDurationSeconds],
    MAX(CASE WHEN r.[NOk] > 0 AND r.[Rn] = 1 THEN r.[Dur] END) AS [LastDurationSeconds],
    SUM(CASE WHEN r.[NOk] > 0 THEN COALESCE(r.[RowsOk], 0) ELSE 0 END) AS [TotalRows],
    MAX(r.[OkTs]) AS [LastSuccessTs]
FROM ranked r
GROUP BY r.[TableName]
