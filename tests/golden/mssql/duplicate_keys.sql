SELECT TOP (5) [order-num], [line], COUNT(*) AS n FROM [stg].[order-line] GROUP BY [order-num], [line] HAVING COUNT(*) > 1 ORDER BY [order-num], [line]
