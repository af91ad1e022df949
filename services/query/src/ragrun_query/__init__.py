"""ragrun query: REST retrieval over the pgvector index the writer fills.

``search`` holds the core (request validation and the SQL), ``main`` the Flask
adapter (``create_app``) and the gunicorn entry points.
"""
