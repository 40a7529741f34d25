"""Credentials out of everything the launcher prints or writes (DRY_RUN output, console.log, meta.json, errors).

`url_secrets` is the one parser of a URL's secret parts, for every form a user types:
    http://user:pass@host/...      user:pass (and pass), also when pass holds `/` or `@` (everything up to the
                                   last `@` before the host is the user-info part)
    user:pass@host:8080/run        the same without a scheme
    http://host/run?token=T&key=K  the values of credential-like query parameters
`redact_url` masks them in place; `Redactor` replaces those strings (longest first) with *** in free text, where
verl prints the URL back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
# Query parameters whose value is a credential.
_SECRET_PARAMS = r"(?:token|key|api_key|apikey|access_token|auth|password|passwd|secret|signature|sig)"
_QUERY_SECRET = re.compile(rf"[?&;]{_SECRET_PARAMS}=([^&#;\s]+)", re.IGNORECASE)
# Optional scheme, then the user-info part: everything up to the last `@` (a password may hold `/` or `@`; masking
# a path that holds `@` too is the safe side).
_USERINFO = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?P<info>.*)@", re.DOTALL)


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret substrings of `url`: its user-info part (and the password alone), credential query values."""
    found: list[str] = []
    match = _USERINFO.match(url)
    if match and match.group("info"):
        info = match.group("info")
        found.append(info)
        _, colon, password = info.partition(":")
        if colon and password:
            found.append(password)
    found += [m.group(1) for m in _QUERY_SECRET.finditer(url)]
    return tuple(dict.fromkeys(s for s in found if s))


class Redactor:
    """Replaces every known secret with *** (the secrets of the URLs it was given)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        secrets = {s for value in values if value for s in url_secrets(value)}
        self._secrets = sorted(secrets, key=len, reverse=True)  # user:pass before pass

    @property
    def active(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


def redact_url(url: str) -> str:
    """`url` with its secrets masked in place: http://***@host/run, host/run?token=***."""
    url = _QUERY_SECRET.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + MASK, url)
    match = _USERINFO.match(url)
    if match and match.group("info"):
        url = url[: match.start("info")] + MASK + url[match.end("info") :]
    return url
