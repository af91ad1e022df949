"""Shared helpers for ragrun's tests (test corpora obtained at set-up time)."""
