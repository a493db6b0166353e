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
FROM t
