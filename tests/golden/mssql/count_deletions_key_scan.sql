SELECT COUNT(*) FROM [ods].[order-line] o WHERE o.[etl_deleted_ts] IS NULL AND NOT EXISTS (SELECT 1 FROM [stg].[order-line__keys] s WHERE s.[order-num] = o.[order-num] AND s.[line] = o.[line])
