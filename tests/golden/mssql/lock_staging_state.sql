SELECT [Batch], [Mode], [RowsStaged], [SourceClockTs] FROM [etl].[ETL_StagingState] WITH (UPDLOCK, HOLDLOCK) WHERE [TableName] = :t
