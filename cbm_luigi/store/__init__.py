"""The store: the only code that writes SQL on the bookkeeping tables (``config.*``, ``etl.*``): their
descriptions and creation, the config tables, the run log, markers, staging state, alerts and checks logs, views."""
