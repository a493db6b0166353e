INSERT INTO [hist].[order-line] ([order-num], [line], [select], [desc], [long-text], [price$], [qty]]x], [rate], [big], [is-open], [ship-date], [dat-mod], [stamp-tz], [stamp-tz_tz_offset], [blob], [hashdiff], [ts_source], [load_ts], [etl_batch], [valid_from], [valid_to], [is_current])
SELECT o.[order-num], o.[line], o.[select], o.[desc], o.[long-text], o.[price$], o.[qty]]x], o.[rate], o.[big], o.[is-open], o.[ship-date], o.[dat-mod], o.[stamp-tz], o.[stamp-tz_tz_offset], o.[blob], o.[hashdiff], o.[ts_source], o.[load_ts], :batch, :ts, NULL, 1
FROM [ods].[order-line] o
WHERE o.[etl_deleted_ts] IS NULL
