SELECT MAX(c.[at]) FROM (SELECT MAX([valid_from]) AS [at] FROM [hist].[order-line] UNION ALL SELECT MAX([valid_to]) FROM [hist].[order-line]) AS c
