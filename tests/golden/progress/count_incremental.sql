SELECT COUNT(*)
FROM "PUB"."order-line"
WHERE "dat-mod" >= CAST(? AS TIMESTAMP)
-- param 1: 2026-11-24 14:30:15
