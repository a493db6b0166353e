SELECT col, coltype, width, scale, nullflag, id, array_extent
FROM SYSPROGRESS.SYSCOLUMNS_FULL
WHERE owner = ? AND tbl = ?
ORDER BY id
-- param 1: PUB
-- param 2: order-line
