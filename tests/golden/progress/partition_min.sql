SELECT MIN("order-num")
FROM "PUB"."order-line"
WHERE ("order-num" > 1000)
