"""Operations around the loads: preflight, health check, validation, profiling, data-quality rules, cache
cleanup and the HTML/CSV/JSON reports."""
