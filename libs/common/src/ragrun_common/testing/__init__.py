"""Test doubles that speak real wire protocols, used by ragrun's tests and benchmarks.

They replace a remote service at the network boundary, so the production
clients (google-genai, ...) run unpatched against them.
"""
