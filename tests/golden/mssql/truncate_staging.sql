TRUNCATE TABLE [stg].[order-line]
