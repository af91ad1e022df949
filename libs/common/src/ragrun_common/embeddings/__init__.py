"""Embedding providers behind one interface, chosen by ``RAGRUN_EMBEDDINGS``."""
