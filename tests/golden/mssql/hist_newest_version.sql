SELECT MAX([valid_from]) FROM [hist].[order-line]
