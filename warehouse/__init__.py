"""The warehouse: the only code that touches storage.

Arrow schemas (`schemas`), atomic and idempotent Parquet IO (`store`), the DuckDB database of views
(`db`), and validated ingest of external files (`ingest`, `microlens`). Every other package talks
to the rest of reelsense through the tables declared in `warehouse.schemas`.
"""
