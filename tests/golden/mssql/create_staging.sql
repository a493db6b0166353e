IF OBJECT_ID(N'[stg].[order-line]', N'U') IS NULL
CREATE TABLE [stg].[order-line] (
    [order-num] int NULL,
    [line] int NULL,
    [select] nvarchar(8) NULL,
    [desc] nvarchar(4000) NULL,
    [long-text] nvarchar(max) NULL,
    [price$] decimal(38,10) NULL,
    [qty]]x] decimal(9,2) NULL,
    [rate] float NULL,
    [big] bigint NULL,
    [is-open] bit NULL,
    [ship-date] date NULL,
    [dat-mod] datetime2(3) NULL,
    [stamp-tz] datetimeoffset(3) NULL,
    [stamp-tz_tz_offset] int NULL,
    [blob] varbinary(max) NULL,
    [hashdiff] char(64) NOT NULL,
    [ts_source] datetime2(3) NULL,
    [load_ts] datetime2(3) NOT NULL
)
