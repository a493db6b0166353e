IF OBJECT_ID(N'[stg].[order-line__keys]', N'U') IS NULL
CREATE TABLE [stg].[order-line__keys] (
    [order-num] int NULL,
    [line] int NULL
)
