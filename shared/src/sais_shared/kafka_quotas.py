"""Client quotas on the broker (KIP-546: AlterClientQuotas, DescribeClientQuotas), which aiokafka ships
neither as messages nor as methods: the v0 messages, as Kafka's own JSON schemas define them
(clients/src/main/resources/common/message/AlterClientQuotas{Request,Response}.json and
DescribeClientQuotas{Request,Response}.json), on aiokafka's wire types.

`sais kafka setup` sets each quota of :func:`sais_shared.kafka_access.quotas` for its user; Strimzi
gets the same numbers as ``KafkaUser.spec.quotas``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Float64, Int8, Int16, Int32, Schema, String

from .errors import ConfigurationError

_ENTITY = Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8")))


class AlterClientQuotasResponse_v0(Response):
    API_KEY = 49
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("entries", Array(("error_code", Int16), ("error_message", String("utf-8")), ("entity", _ENTITY))),
    )


class AlterClientQuotasRequest_v0(RequestStruct):
    API_KEY = 49
    API_VERSION = 0
    RESPONSE_TYPE = AlterClientQuotasResponse_v0
    SCHEMA = Schema(
        (
            "entries",
            Array(
                ("entity", _ENTITY),
                ("ops", Array(("key", String("utf-8")), ("value", Float64), ("remove", Boolean))),
            ),
        ),
        ("validate_only", Boolean),
    )


class DescribeClientQuotasResponse_v0(Response):
    API_KEY = 48
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", String("utf-8")),
        ("entries", Array(("entity", _ENTITY), ("values", Array(("key", String("utf-8")), ("value", Float64))))),
    )


class DescribeClientQuotasRequest_v0(RequestStruct):
    API_KEY = 48
    API_VERSION = 0
    RESPONSE_TYPE = DescribeClientQuotasResponse_v0
    SCHEMA = Schema(
        ("components", Array(("entity_type", String("utf-8")), ("match_type", Int8), ("match", String("utf-8")))),
        ("strict", Boolean),
    )


class _AlterClientQuotas(Request[AlterClientQuotasRequest_v0]):
    API_KEY = 49

    def __init__(self, quotas: Mapping[str, Mapping[str, float]]) -> None:
        self.quotas = quotas

    def build(self, request_struct_class: type[AlterClientQuotasRequest_v0]) -> AlterClientQuotasRequest_v0:
        return request_struct_class(
            [
                ([("user", user)], [(k, float(v), False) for k, v in values.items()])
                for user, values in self.quotas.items()
            ],
            False,
        )


class _DescribeClientQuotas(Request[DescribeClientQuotasRequest_v0]):
    API_KEY = 48

    def __init__(self, user: str) -> None:
        self.user = user

    def build(self, request_struct_class: type[DescribeClientQuotasRequest_v0]) -> DescribeClientQuotasRequest_v0:
        exact = 0
        return request_struct_class([("user", exact, self.user)], True)


async def set_quotas(
    admin: AIOKafkaAdminClient, quotas: Mapping[str, Mapping[str, float]], timeout_s: float = 30.0
) -> int:
    """Set each user's quotas (bytes per second and the like) and wait until the broker serves them (the
    controller's metadata reaches it asynchronously); returns how many users."""
    if not quotas:
        return 0
    response = await admin._send_request(_AlterClientQuotas(quotas))
    failed = [(entity, message) for code, message, entity in response.entries if code]
    if failed:
        raise ConfigurationError(f"Kafka refused the quota for {failed[0][0]}: {failed[0][1]}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for user, values in quotas.items():
        while (held := await quotas_of(admin, user)) != {k: float(v) for k, v in values.items()}:
            if loop.time() > deadline:
                raise ConfigurationError(f"Kafka has not applied the quota of {user} after {timeout_s:.0f} s: {held}")
            await asyncio.sleep(0.1)  # polling the broker's own view: there is no event to wait on
    return len(quotas)


async def quotas_of(admin: AIOKafkaAdminClient, user: str) -> dict[str, float]:
    """The quotas the broker holds for one user (exactly that user, not the defaults)."""
    response = await admin._send_request(_DescribeClientQuotas(user))
    if response.error_code:
        raise ConfigurationError(f"Kafka refused to describe the quotas of {user}: {response.error_message}")
    return {k: v for _entity, values in (response.entries or []) for k, v in values}
