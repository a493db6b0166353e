SELECT "order-num" AS "order_num",
       "line-num" AS "line_num"
FROM "PUB"."order-line"
WHERE ("order-num" > 1000)
