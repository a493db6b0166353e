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
        [qty-month_1] = s.[qty-month_1],
        [qty-month_2] = s.[qty-month_2],
        [qty-month_3] = s.[qty-month_3],
        [hashdiff] = s.[hashdiff],
        [ts_source] = s.[ts_source],
        [load_ts] = s.[load_ts],
        [etl_batch] = :batch
WHEN NOT MATCHED BY TARGET THEN
    INSERT ([order-num], [line], [select], [desc], [long-text], [price$], [qty]]x], [rate], [big], [is-open], [ship-date], [dat-mod], [stamp-tz], [stamp-tz_tz_offset], [blob], [qty-month_1], [qty-month_2], [qty-month_3], [hashdiff], [ts_source], [load_ts], [etl_batch])
    VALUES (s.[order-num], s.[line], s.[select], s.[desc], s.[long-text], s.[price$], s.[qty]]x], s.[rate], s.[big], s.[is-open], s.[ship-date], s.[dat-mod], s.[stamp-tz], s.[stamp-tz_tz_offset], s.[blob], s.[qty-month_1], s.[qty-month_2], s.[qty-month_3], s.[hashdiff], s.[ts_source], s.[load_ts], :batch)
OUTPUT $action INTO @actions;
SET NOCOUNT OFF;
SELECT
    COALESCE(SUM(CASE WHEN [action] = N'INSERT' THEN 1 ELSE 0 END), 0) AS [inserted],
    COALESCE(SUM(CASE WHEN [action] = N'UPDATE' THEN 1 ELSE 0 END), 0) AS [updated]
FROM @actions;
