SELECT "order-num" AS "order_num",
       "line-num" AS "line_num",
       SUBSTR("item#", 1, 20) AS "item_",
       SUBSTR("desc", 1, 60) AS "desc",
       "price$" AS "price_",
       "select" AS "select",
       "dat-mod" AS "dat_mod",
       "ship-date" AS "ship_date"
FROM "PUB"."order-line"
