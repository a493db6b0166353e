SELECT "order-num" AS "order_num",
       "line-num" AS "line_num",
       "item#" AS "item_",
       "desc" AS "desc",
       "price$" AS "price_",
       "select" AS "select",
       "dat-mod" AS "dat_mod",
       "ship-date" AS "ship_date",
       CAST("dat-tz" AS VARCHAR(40)) AS "dat_tz",
       "qte-mois" AS "qte_mois"
FROM "PUB"."order-line"
