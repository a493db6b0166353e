"""The model: table and column specs, logical types, SQL-safe names, batch keys and the load plan. No I/O."""
