ALTER TABLE [ods].[order-line] ADD [new-col] nvarchar(30) NULL
