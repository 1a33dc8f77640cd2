"""Pool bucketing rules, pool/stat schemas and the DuckDB catalog."""
