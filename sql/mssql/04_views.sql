-- Monitoring views: etl.vw_LastRuns, etl.vw_TablePerformance, etl.vw_SLABreach.
-- Generated from cbm_luigi/store/mssql_scripts.py (CBM_UPDATE_GOLDEN=1 python -m pytest tests/destinations/test_mssql_golden.py); do not edit by hand.
-- Idempotent: safe to run again. Run with sqlcmd -b -i <file> or in SSMS (GO separates the batches).

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
WHERE k.[Rn] = 1;
GO

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
GROUP BY r.[TableName];
GO

CREATE OR ALTER VIEW [etl].[vw_SLABreach] AS
WITH last_ok AS (
    SELECT [TableName], MAX([LogTs]) AS [LastSuccessTs]
    FROM [etl].[ETL_Log]
    WHERE [StepName] = 'flow_complete' AND [Status] = 'success'
    GROUP BY [TableName]
),
t AS (
    SELECT c.[TableName],
    CASE WHEN COALESCE(TRIM(c.[PriorityTier]), '') <> '' THEN LOWER(TRIM(c.[PriorityTier]))
         WHEN LOWER(COALESCE(c.[Notes], '')) LIKE '%critical%' OR LOWER(COALESCE(c.[Notes], '')) LIKE '%critique%' THEN 'critical'
         WHEN LOWER(COALESCE(c.[Notes], '')) LIKE '%high%' OR LOWER(COALESCE(c.[Notes], '')) LIKE '%haute%' OR c.[IsDimension] = 1 THEN 'high'
         ELSE 'normal' END AS [PriorityTier],
    CAST(COALESCE(c.[SLAHours], 24) AS float) AS [SLAHours],
    o.[LastSuccessTs],
    CAST(DATEDIFF_BIG(MILLISECOND, o.[LastSuccessTs], SYSDATETIME()) / 1000.0 AS float) / 3600.0 AS [HoursSinceSuccess]
    FROM [config].[ETL_Tables] c
    LEFT JOIN last_ok o ON o.[TableName] = c.[TableName]
    WHERE c.[IsActive] = 1
)
SELECT t.[TableName], t.[PriorityTier], t.[SLAHours], t.[LastSuccessTs], t.[HoursSinceSuccess],
    CASE WHEN t.[LastSuccessTs] IS NULL THEN 'CRITICAL'
         WHEN t.[HoursSinceSuccess] <= t.[SLAHours] THEN 'OK'
         WHEN t.[HoursSinceSuccess] <= 2 * t.[SLAHours] THEN 'WARNING'
         ELSE 'CRITICAL' END AS [SLAStatus]
FROM t;
GO
