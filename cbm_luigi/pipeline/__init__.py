"""The data path, in reading order: ``sources/`` (read), ``transform`` (clean, hashdiff), ``extract`` (parquet +
manifest), ``stage`` (bulk load ``stg.<table>``), ``merge`` (MERGE into ``ods.<table>``); ``retry`` wraps each step."""
