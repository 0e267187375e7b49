"""Topic names and idempotent creation.

One topic per event type, keyed by ``seller_id`` (so one seller's events share a
partition number in every topic: the worker that owns partition p of one topic
owns it in all of them), plus a dead-letter topic for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiokafka.partitioner import murmur2

from streams.engine.events import EVENT_TYPES, EventType
from streams.errors import BrokerUnavailable
from streams.settings import Settings

TOPIC_OF_TYPE: Final[dict[EventType, str]] = {
    "order": "orders",
    "cancellation": "cancellations",
    "shipment": "shipments",
    "refund": "refunds",
    "feedback": "feedback",
    "claim": "claims",
    "message": "messages",
    "delivery": "deliveries",
    "return": "returns",
}
DEADLETTER: Final = "popstream-deadletter"
STATUS: Final = "popstream-status"
_TOPIC_ALREADY_EXISTS: Final = 36

# Event topics: long enough to rebuild state after losing it (the longest window
# plus slack); the dead-letter topic: long enough for someone to look.
EVENT_RETENTION_MS: Final = str(100 * 86_400_000)
DEADLETTER_RETENTION_MS: Final = str(30 * 86_400_000)


@dataclass(frozen=True, slots=True)
class TopicNames:
    prefix: str = ""

    def for_type(self, event_type: EventType) -> str:
        return self.prefix + TOPIC_OF_TYPE[event_type]

    @property
    def events(self) -> list[str]:
        return [self.for_type(t) for t in EVENT_TYPES]

    @property
    def deadletter(self) -> str:
        return self.prefix + DEADLETTER

    @property
    def status(self) -> str:
        """Seller status transitions (streams.fleet.Transition), keyed by seller."""
        return self.prefix + STATUS


def owner_partition(seller_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a message keyed by the
    seller id (murmur2, as the Java client and aiokafka do): the one partition
    whose worker owns the seller's state."""
    digest: int = murmur2(seller_id.encode())
    return (digest & 0x7FFFFFFF) % partitions


async def read_max_message_bytes(settings: Settings, topics: list[str],
                                 timeout_ms: int = 10_000) -> dict[str, int]:
    """Each existing topic's ``max.message.bytes`` (topics that do not exist, or
    that the broker does not describe, are left out)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=timeout_ms,
        **settings.security.aiokafka_kwargs(),
    )
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {"max.message.bytes": None})
             for name in topics]
        )
    finally:
        await admin.close()
    out: dict[str, int] = {}
    for response in responses:
        for error_code, _message, _type, name, entries in response.resources:
            if error_code != 0:
                continue
            for entry in entries:
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    out[name] = int(entry[1])
    return out


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: list[str]
    existing: dict[str, int]  # name -> partitions

    def lines(self) -> list[str]:
        out = [f"created {name}" for name in self.created]
        out += [f"exists  {name} ({n} partitions)" for name, n in sorted(self.existing.items())]
        return out


async def create_topics(settings: Settings, timeout_ms: int = 30_000) -> TopicReport:
    """Create the event and dead-letter topics that do not exist yet."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    names = TopicNames(settings.topic_prefix)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=timeout_ms,
        **settings.security.aiokafka_kwargs(),
    )
    try:
        await admin.start()
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from None
    try:
        wanted = dict.fromkeys(names.events, EVENT_RETENTION_MS)
        wanted[names.deadletter] = DEADLETTER_RETENTION_MS
        wanted[names.status] = DEADLETTER_RETENTION_MS
        described = await admin.describe_topics(list(wanted))
        existing = {
            d["topic"]: len(d["partitions"]) for d in described if d.get("error_code", 0) == 0
        }
        missing = [
            NewTopic(
                name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication,
                topic_configs={
                    "retention.ms": retention,
                    # Dead letters carry headers on top of a value of up to the
                    # event topics' limit: room for them, so most fit uncut.
                    "max.message.bytes": str(settings.max_message_bytes
                                             + (65_536 if name == names.deadletter else 0)),
                },
            )
            for name, retention in wanted.items()
            if name not in existing
        ]
        created: list[str] = []
        if missing:
            try:
                response = await admin.create_topics(missing, timeout_ms=timeout_ms)
            except TopicAlreadyExistsError:  # a concurrent creator won the race
                response = None
            for name, code, *rest in getattr(response, "topic_errors", []):
                if code == 0:
                    created.append(name)
                elif code != _TOPIC_ALREADY_EXISTS:
                    message = rest[0] if rest else ""
                    raise BrokerUnavailable(
                        f"creating topic {name!r} failed: error {code} {message}".strip()
                    )
        return TopicReport(created, existing)
    finally:
        await admin.close()
