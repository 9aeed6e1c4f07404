"""Secrets out of text: what a database URL or an error message may show.

A password can come inside a URL (`postgresql://app:s3cret@db/graphloop`, `?password=...`),
and a server may echo a model's key or a header's value in an error; `redact` replaces them
with `****` before the text reaches a message, a log line, a hint or the database.

Example:
    >>> redact("could not reach postgresql://app:s3cret@db.internal/graphloop?sslpassword=x&a=1")
    'could not reach postgresql://app:****@db.internal/graphloop?sslpassword=****&a=1'
    >>> redact("model 'p' (m at http://gw.internal/sk-live-PATHKEY-55556666/v1) answered HTTP 502")
    "model 'p' (m at http://gw.internal/****/v1) answered HTTP 502"
    >>> redact("http://pk-prod-llm-gateway.corp/v1 skip_confirmation_checks")
    'http://pk-prod-llm-gateway.corp/v1 skip_confirmation_checks'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MIN_SECRET", "redact"]

MIN_SECRET = 4
"""Characters a given secret needs to be looked for: replacing shorter text would garble every
message, and a shorter key guards nothing."""

_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s]*@(?=[^\s@]*(?:[\s/?#]|$))")
"""`scheme://user:` then the password, up to the last `@` before the host (a password may hold
`@`, `/` or `:`)."""
_SECRET_PARAM = re.compile(r"((?:[?&;#\s]|^)[\w.-]*(?:password|passwd|secret|token|api[_-]?key)[\w.-]*=)[^&;\s]*",
                           re.IGNORECASE)


_KEY_SHAPED = re.compile(r"\b(?:(?:sk|pk|rk|gsk|xai|hf|ghp|glpat)[-_](?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{16,}"
                         r"|AIza[\w-]{30,})")
"""Text shaped like a provider's key (OpenAI's and OpenRouter's `sk-…`, Groq's `gsk_…`, xAI,
Hugging Face, GitHub, GitLab, Google): a prefix, a separator, then 16 or more characters with
letters and digits, wherever it is; a key pasted into a URL's path, a bare query or a fragment
has no name to find it by. Words (`pk-prod-llm-gateway`, `skip_confirmation_checks`) are not."""


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets` (a model's key, a header's value), every URL password,
    every `...password=`/`token=`/`api_key=` value and anything shaped like a provider's key
    (`sk-…`) as `****`.

    Example:
        >>> redact("401: Incorrect API key provided: sk-live-123.", secrets=["sk-live-123"])
        '401: Incorrect API key provided: ****.'
    """
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, "****")  # the longest first: a key may contain another
    text = _KEY_SHAPED.sub("****", text)
    return _SECRET_PARAM.sub(r"\1****", _USERINFO.sub(r"\1****@", text))
