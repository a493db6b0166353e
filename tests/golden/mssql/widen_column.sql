ALTER TABLE [ods].[order-line] ALTER COLUMN [price$] decimal(24,6) NULL
