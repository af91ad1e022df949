"""Token estimates for sizing chunks and embedding requests.

Embedding APIs count tokens with their own subword tokenizers, which are not
available offline. The estimate here counts words and punctuation and charges
long words one token per four characters, which stays at or above what
SentencePiece/WordPiece tokenizers report for English prose, so batches sized
with it stay under the API's per-request token limit.
"""

import re

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_CHARS_PER_SUBWORD = 4


def count_tokens(text: str) -> int:
    """Estimated number of model tokens in ``text`` (an upper-leaning estimate)."""
    total = 0
    for match in _TOKEN_RE.finditer(text):
        length = match.end() - match.start()
        total += 1 if length <= _CHARS_PER_SUBWORD else -(-length // _CHARS_PER_SUBWORD)
    return total
