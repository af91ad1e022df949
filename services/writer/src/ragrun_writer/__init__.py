"""ragrun writer: vector batches in, rows in PostgreSQL + pgvector out."""
