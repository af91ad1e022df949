"""ragrun chunker: turns an uploaded object into text sections and token-sized chunks.

The core (:mod:`ragrun_chunker.extract`, :mod:`ragrun_chunker.chunking`) is pure:
bytes in, chunks out, no clients and no I/O, so the transport adapters stay thin.
"""
