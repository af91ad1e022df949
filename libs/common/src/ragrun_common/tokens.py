"""Token estimates for sizing chunks and embedding requests.

Embedding APIs count tokens with their own subword tokenizers, which are not
available offline. The estimate here counts each word of up to seven
characters and each punctuation mark as one token, and longer words as one
token per five characters. For English prose that is at or a little above what
SentencePiece/WordPiece tokenizers report, so requests sized with it stay
under the API's per-request token limit without wasting much of it.
"""

import re

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_WHOLE_WORD_CHARS = 7
_CHARS_PER_SUBWORD = 5


def count_tokens(text: str) -> int:
    """Estimated number of model tokens in ``text`` (an upper-leaning estimate)."""
    total = 0
    for match in _TOKEN_RE.finditer(text):
        length = match.end() - match.start()
        total += 1 if length <= _WHOLE_WORD_CHARS else -(-length // _CHARS_PER_SUBWORD)
    return total
