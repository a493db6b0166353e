ALTER TABLE [ods].[order-line] ALTER COLUMN [qty]]x] nvarchar(max) NULL
