"""Keep secrets out of every string the service stores, prints, logs or raises (pure).

One process-wide registry: the settings' secrets are registered when a process starts
(`publisher.logs.configure_logging`, `publisher.service.build_edges`), and a token obtained
by logging in is registered as it arrives (`publisher.akinon.auth`). Each secret is
registered with the forms it takes when it is escaped on the way: JSON-escaped (a body that
echoes it), URL-encoded (a query string, a URL's userinfo) and Python's `repr`. `scrub`
replaces every one of them; the logging setup, the step boundary (`last_error`, the error a
task raises, what `poll` prints) and `status` all go through it.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Final
from urllib.parse import quote, quote_plus

import orjson

MASK: Final = "***"
# Shorter values are not treated as secrets: masking "ab" everywhere would garble text.
SHORTEST: Final = 3
# Login tokens remembered at once: a few logins an hour at most (the client's login cap).
TOKENS_KEPT: Final = 64


def forms(secret: str) -> set[str]:
    """Return a secret as it is written raw and in each escaped form it may take."""
    found = {
        secret,
        orjson.dumps(secret).decode()[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        repr(secret)[1:-1],
    }
    return {f for f in found if len(f) >= SHORTEST}


class Redactor:
    """Remember secrets and replace them (in every registered form) with `MASK`.

    The settings' secrets are kept for good; tokens obtained by logging in (`register_token`)
    only the last `TOKENS_KEPT`, so that a worker that logs in for months does not make
    every scrub slower.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._tokens: OrderedDict[str, set[str]] = OrderedDict()
        self._ordered: tuple[str, ...] = ()

    def register(self, *secrets: str | None) -> None:
        """Add secrets for good (None and short values are ignored)."""
        with self._lock:
            for secret in secrets:
                if secret and len(secret) >= SHORTEST:
                    self._known |= forms(secret) | {secret}
            self._reorder()

    def register_token(self, token: str | None) -> None:
        """Add a token obtained by logging in; the oldest beyond `TOKENS_KEPT` is dropped."""
        if not token or len(token) < SHORTEST:
            return
        with self._lock:
            self._tokens[token] = forms(token) | {token}
            self._tokens.move_to_end(token)
            while len(self._tokens) > TOKENS_KEPT:
                self._tokens.popitem(last=False)
            self._reorder()

    def _reorder(self) -> None:
        every = self._known.union(*self._tokens.values())
        # Longest first: a secret that contains another is masked whole.
        self._ordered = tuple(sorted(every, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """Return `text` with every registered secret masked."""
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def scrub_exception(self, exc: BaseException) -> None:
        """Mask secrets in the messages of an exception and of those it was raised from.

        The exception is what a Celery task result (Flower) and `poll` show; its message is
        rewritten in place. An exception in the chain whose text still holds a secret after
        that (a type that builds its message otherwise) is cut from the chain.
        """
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and all(current is not e for e in chain):
            chain.append(current)
            current.args = tuple(
                self.scrub(arg) if isinstance(arg, str) else arg for arg in current.args
            )
            current = current.__cause__ or current.__context__
        for raised, following in itertools.pairwise(chain):
            text = _text(following)
            if self.scrub(text) != text:
                raised.__cause__, raised.__context__ = None, None
                raised.__suppress_context__ = True
                return


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ is not ours to fix
        return ""


REDACTOR: Final = Redactor()
register = REDACTOR.register
register_token = REDACTOR.register_token
scrub = REDACTOR.scrub
scrub_exception = REDACTOR.scrub_exception
