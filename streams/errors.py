"""One root exception and a named class per failure.

Callers catch precisely (``except InvalidEvent``) and the class name is the first
line of the diagnosis; messages say what was expected, what arrived, and where.
"""

from __future__ import annotations


class PopstreamError(Exception):
    """Root of every error popstream raises on purpose."""


class InvalidEvent(PopstreamError, ValueError):
    """An event that breaks the v1 contract.

    ``field`` is a JSON path (``$.ship_by``) or ``None`` when the whole value is at
    fault (not JSON, not an object); ``reason`` is a short human sentence. Both go
    verbatim into replay's stderr report and the dead-letter record.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{reason} (at {field})" if field else reason)


class ConflictingEvent(InvalidEvent):
    """A well-formed event that contradicts state the engine already holds.

    Example: a second ``order`` event, under a new ``event_id``, for an order that
    already exists. Keeping the first is the only order-insensitive-enough choice we
    can make without guessing which one the producer meant, so the second is
    rejected loudly rather than merged quietly.
    """


class TooFarAhead(InvalidEvent):
    """An event stamped further after the engine's clock than it accepts.

    An event after the clock is held, in memory and in the changelog, until the
    clock reaches it; a producer bug stamping events years ahead would keep them
    forever. An engine built with a ``future_horizon`` rejects those instead (the
    state is unchanged), with ``field`` ``$.occurred_at``.
    """


class ConfigError(PopstreamError):
    """A setting or catalog entry that cannot work, caught at start-up."""


class BrokerUnavailable(PopstreamError):
    """Kafka could not be reached or started."""
