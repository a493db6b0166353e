SELECT "order-num" AS "order_num",
       "line-num" AS "line_num",
       "item#" AS "item_",
       "desc" AS "desc",
       "price$" AS "price_",
       "select" AS "select",
       "dat-mod" AS "dat_mod",
       "ship-date" AS "ship_date"
FROM "PUB"."order-line"
WHERE ("order-num" > 1000)
  AND "order-num" >= CAST(? AS BIGINT)
  AND "order-num" < CAST(? AS BIGINT)
-- param 1: 1001
-- param 2: 2001
