INSERT INTO [hist].[order-line] ([order-num], [line], [select], [desc], [long-text], [price$], [qty]]x], [rate], [big], [is-open], [ship-date], [dat-mod], [stamp-tz], [stamp-tz_tz_offset], [blob], [hashdiff], [ts_source], [load_ts], [etl_batch], [valid_from], [valid_to], [is_current])
SELECT s.[order-num], s.[line], s.[select], s.[desc], s.[long-text], s.[price$], s.[qty]]x], s.[rate], s.[big], s.[is-open], s.[ship-date], s.[dat-mod], s.[stamp-tz], s.[stamp-tz_tz_offset], s.[blob], s.[hashdiff], s.[ts_source], s.[load_ts], :batch, :ts, NULL, 1
FROM [stg].[order-line] s
WHERE NOT EXISTS (SELECT 1 FROM [hist].[order-line] h WHERE h.[order-num] = s.[order-num] AND h.[line] = s.[line] AND h.[is_current] = 1)
AND NOT EXISTS (SELECT 1 FROM [ods].[order-line] o WHERE o.[order-num] = s.[order-num] AND o.[line] = s.[line] AND o.[etl_deleted_ts] IS NOT NULL)
