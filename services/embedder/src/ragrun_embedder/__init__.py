"""ragrun embedder: chunk batches in, vector batches out."""
