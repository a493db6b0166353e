SELECT c.[name] FROM sys.columns AS c WHERE c.[object_id] = OBJECT_ID(QUOTENAME(:schema) + N'.' + QUOTENAME(:table), N'U') ORDER BY c.[column_id]
