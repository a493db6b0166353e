UPDATE h SET h.[valid_to] = :ts, h.[is_current] = 0
FROM [hist].[order-line] AS h
WHERE h.[is_current] = 1 AND EXISTS (SELECT 1 FROM [ods].[order-line] AS o WHERE o.[order-num] = h.[order-num] AND o.[line] = h.[line] AND o.[etl_deleted_ts] IS NOT NULL)
