UPDATE h SET h.[valid_to] = :ts, h.[is_current] = 0
FROM [hist].[order-line] AS h
WHERE h.[is_current] = 1 AND EXISTS (SELECT 1 FROM [stg].[order-line] AS s WHERE s.[order-num] = h.[order-num] AND s.[line] = h.[line] AND s.[hashdiff] <> h.[hashdiff])
