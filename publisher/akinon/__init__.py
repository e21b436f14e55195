"""POLL edge: a synchronous client of Akinon's sales-channel API, over httpx.

What this client takes care of, so nothing above it has to:

- auth: ``Authorization: Token <key>``, the key either given or obtained by logging in. A
  login's token is shared by every client of the process for the same (base URL, user), a
  401 triggers one fresh login and one more try, and logins are capped (3 per 6 minutes)
  so a wrong password cannot hammer the login endpoint;
- both list shapes on every list endpoint (a plain array, or ``{count, next, previous,
  results}``), paging with ``page``/``limit``, with several pages in flight (a window
  that adapts like TCP's) handed over in page order;
- bounds on every answer (bytes, decompressed bytes) and on every request (a wall-clock
  deadline over connect, TLS, send, headers and body; `deadline`) and, if set,
  on the requests per second a worker process sends to the host;
- the token only ever goes to the scheme, host and port of the base URL: a ``next`` link
  elsewhere is refused before any request to it, and redirects are never followed;
- timeouts always set; retries with capped, jittered back-off;
- every httpx error is translated in one place (`errors.httpx_boundary`) into our own.

How a failure surfaces (every exception is from `publisher.errors`):

    connect error, timeout, cut-off body,    retried with back-off  -> AkinonUnavailable
    429 (Retry-After honoured), any 5xx,
    the request deadline passed
    invalid JSON, undecodable body           retried with back-off  -> AkinonBadResponse
    JSON that is neither list shape,         at once                -> AkinonBadResponse
    an answer past the size bound
    401                                      one fresh login + try  -> AuthError
                                             (at once with a fixed token)
    any 3xx, other 4xx, a foreign `next`,    never retried          -> AkinonProtocolError
    an unsupported URL scheme, a TLS
    certificate that does not verify
    userinfo in the URL, http:// to a        at construction        -> ConfigError
    remote host (unless allowed)

A record orjson refuses on a well-formed page (a number past a double's range) is not an
error: it is rejected alone (`publisher.pages.Unreadable`).

Every 5xx is retried, 500 included: Akinon's own framework does the same, a 500 from a
Django back office is most often a passing database or worker problem, and the cost is
bounded by `max_retries`.

Modules: `client` (the client: requests, retries, auth flow, endpoints), `paging` (list
shapes, `next` links), `flight` (pages in flight, in order), `window` (how many), `pacing`
(requests per second per host), `body` (bounded reads), `auth` (the process's token cache
and login cap), `errors` (translation of httpx errors, statuses and bodies).
"""

from publisher.akinon.auth import DEFAULT_TOKEN_CACHE, TokenCache
from publisher.akinon.client import AkinonClient
from publisher.akinon.errors import Where

__all__ = ["DEFAULT_TOKEN_CACHE", "AkinonClient", "TokenCache", "Where"]
