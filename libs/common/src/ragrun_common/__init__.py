"""Code every ragrun service shares: settings, contracts, transport and storage helpers.

It holds no stage's business logic; each service keeps its own pure core.
"""
