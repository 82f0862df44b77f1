-- samples: see warehouse/schemas.py for the columns.
CREATE OR REPLACE VIEW samples AS
SELECT * FROM read_parquet($files, union_by_name = true);
