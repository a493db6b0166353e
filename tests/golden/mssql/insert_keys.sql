INSERT INTO [stg].[order-line__keys] ([order-num], [line]) VALUES (:k0, :k1)
