"""Secrets out of text: what a database URL or an error message may show.

A password can come inside a URL (`postgresql://app:s3cret@db/graphloop`, `?password=...`);
these helpers replace it with `****` before the text reaches a message, a log line or a hint.

Example:
    >>> redact("could not reach postgresql://app:s3cret@db.internal/graphloop?sslpassword=x&a=1")
    'could not reach postgresql://app:****@db.internal/graphloop?sslpassword=****&a=1'
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s]*@(?=[^\s@]*(?:[\s/?#]|$))")
"""`scheme://user:` then the password, up to the last `@` before the host (a password may hold
`@`, `/` or `:`)."""
_SECRET_PARAM = re.compile(r"((?:[?&;\s]|^)[\w.-]*(?:password|passwd|secret|token|api[_-]?key)[\w.-]*=)[^&;\s]*",
                           re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every URL password and every `...password=`/`token=`/`api_key=` value as `****`."""
    return _SECRET_PARAM.sub(r"\1****", _USERINFO.sub(r"\1****@", text))
