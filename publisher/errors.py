"""Raise one family of exceptions, split by what the caller should do next.

    PublisherError                 root: catch this to catch everything of ours
    ├── RetryableError             the world may fix itself; try the step again later
    │   ├── AkinonUnavailable      connect error, timeout, 429 or 5xx after our own retries
    │   ├── AkinonBadResponse      invalid JSON or a truncated body (names channel/endpoint/page)
    │   ├── BrokerError            nack, lost connection, confirm timeout; nothing was committed
    │   ├── StateStoreError        Redis could not be read or written
    │   └── LockLost               the step's lock expired or was taken: it stopped before
    │                              publishing or committing anything more
    └── FatalError                 a person must act; retrying cannot help
        ├── ConfigError            a missing or malformed setting (names the variable)
        ├── AuthError              wrong token or credentials, or the login cap was reached
        ├── AkinonProtocolError    a 4xx other than 401/429, a foreign-host `next`, a shape we
        │                          cannot read
        ├── BrokerConfigError      the broker refused us for good: credentials, vhost access,
        │                          permissions, an exchange or queue declared otherwise
        ├── UnsafeArgument         a task argument or id that is not a configured channel, a
        │                          known resource or a positive integer: refused before it
        │                          reaches a request path, a Redis key or a routing key
        └── StepCrashed            an exception that is not ours left a step (a bug, data no
                                   rule foresaw, a time limit): named and recorded, never raw

Library errors (httpx, redis, amqp) are translated where they enter, so nothing above the
edges catches a third-party exception, and the step boundary (`publisher.service`) turns
anything that still slips through into `StepCrashed`. Celery's `autoretry_for` names
`RetryableError` only.
A record that fails validation is not an exception here: it becomes a `record.rejected` event
and the rest of its batch goes on.
"""

from __future__ import annotations


class PublisherError(Exception):
    """Base of every error this package raises on purpose."""


class RetryableError(PublisherError):
    """Signal a failure that may pass if the same step runs again later."""


class FatalError(PublisherError):
    """Signal a failure that needs a person: configuration, credentials, protocol."""


class AkinonUnavailable(RetryableError):
    """Akinon could not be reached or kept refusing after every retry."""


class AkinonBadResponse(RetryableError):
    """Akinon answered with a body we could not decode."""


class BrokerError(RetryableError):
    """The broker did not confirm every event of a batch."""


class StateStoreError(RetryableError):
    """The state store (Redis) failed while reading or writing."""


class ConfigError(FatalError):
    """A setting is missing or malformed."""


class AuthError(FatalError):
    """Akinon refused our token or credentials."""


class AkinonProtocolError(FatalError):
    """Akinon answered in a way that retrying will not change."""


class BrokerConfigError(FatalError):
    """The broker refused something a new connection would ask again (says what to fix)."""


class UnsafeArgument(FatalError):
    """A channel id, resource or record id that is not one this service may use."""


class LockLost(RetryableError):
    """The step's lock expired or another step took it; this one stopped short."""


class StepCrashed(FatalError):
    """An exception that is not ours left a step; its type and message are kept."""
