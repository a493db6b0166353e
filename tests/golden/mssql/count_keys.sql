SELECT COUNT(*) FROM [stg].[order-line__keys]
