"""The performance benchmark of cbm-luigi (``python bench/run.py`` or ``cbm-etl bench``); see docs/PERFORMANCE.md."""
