IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE [name] = N'UX_hist_order-line_current' AND [object_id] = OBJECT_ID(N'[hist].[order-line]'))
CREATE UNIQUE NONCLUSTERED INDEX [UX_hist_order-line_current] ON [hist].[order-line] ([order-num], [line]) WHERE [is_current] = 1
