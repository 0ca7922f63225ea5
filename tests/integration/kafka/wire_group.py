"""Group members speaking raw JoinGroup/SyncGroup/Heartbeat (kio-encoded, one socket each).

Used where a test must control exactly when each request is sent: bad input, and the
timing of a rebalance from the last JoinGroup to the last SyncGroup answer.
"""

from __future__ import annotations

import datetime
import itertools
import time
from typing import Any

from tests.integration.kafka.wire_client import WireClient, encode_request, request_types

FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = 10, 11, 12, 13, 14
JOIN_V, SYNC_V, HEARTBEAT_V, LEAVE_V = 9, 5, 4, 5
MEMBER_ID_REQUIRED = 79
_correlation = itertools.count(1)


def ms(value: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=value)


def join_request(
    group: str,
    member_id: str = "",
    *,
    session_ms: int = 10_000,
    rebalance_ms: int = 10_000,
    protocol_type: str = "consumer",
    protocols: tuple[tuple[str, bytes], ...] = (("range", b"meta"),),
    instance_id: str | None = None,
    version: int = JOIN_V,
) -> Any:
    m = request_types(JOIN_GROUP, version)
    return m.JoinGroupRequest(
        group_id=group,
        session_timeout=ms(session_ms),
        rebalance_timeout=ms(rebalance_ms),
        member_id=member_id,
        group_instance_id=instance_id,
        protocol_type=protocol_type,
        protocols=tuple(m.JoinGroupRequestProtocol(name=n, metadata=md) for n, md in protocols),
        reason=None,
    )


class WireMember:
    """One member of a group on its own connection."""

    def __init__(self, port: int, group: str, **join: Any) -> None:
        self.client = WireClient(port)
        self.group = group
        self.join_args = join
        self.member_id = ""
        self.generation = -1
        self.leader = ""
        self.members: list[str] = []
        self.assignment = b""

    def close(self) -> None:
        self.client.close()

    def call(self, request: Any, api_key: int) -> Any:
        self.send(request)
        return self.receive(api_key, request.__version__)

    def send(self, request: Any) -> None:
        self.client.send(encode_request(request, next(_correlation)))

    def receive(self, api_key: int, version: int) -> Any:
        return self.client.read_response(api_key, version)[1]

    # -- the protocol steps ----------------------------------------------------------

    def obtain_member_id(self) -> None:
        """KIP-394: the first JoinGroup only hands out the member id."""
        response = self.call(join_request(self.group, **self.join_args), JOIN_GROUP)
        assert response.error_code == MEMBER_ID_REQUIRED, response
        self.member_id = response.member_id

    def send_join(self) -> None:
        self.send(join_request(self.group, self.member_id, **self.join_args))

    def receive_join(self) -> Any:
        response = self.receive(JOIN_GROUP, JOIN_V)
        assert response.error_code == 0, response
        self.member_id = response.member_id
        self.generation = response.generation_id
        self.leader = response.leader
        self.members = [m.member_id for m in response.members]
        return response

    def send_sync(self, assignments: dict[str, bytes] | None = None) -> None:
        m = request_types(SYNC_GROUP, SYNC_V)
        self.send(
            m.SyncGroupRequest(
                group_id=self.group,
                generation_id=self.generation,
                member_id=self.member_id,
                group_instance_id=self.join_args.get("instance_id"),
                protocol_type="consumer",
                protocol_name=None,
                assignments=tuple(
                    m.SyncGroupRequestAssignment(member_id=k, assignment=v)
                    for k, v in (assignments or {}).items()
                ),
            )
        )

    def receive_sync(self) -> Any:
        response = self.receive(SYNC_GROUP, SYNC_V)
        assert response.error_code == 0, response
        self.assignment = response.assignment
        return response

    def heartbeat(self, generation: int | None = None, member_id: str | None = None) -> int:
        m = request_types(HEARTBEAT, HEARTBEAT_V)
        response = self.call(
            m.HeartbeatRequest(
                group_id=self.group,
                generation_id=self.generation if generation is None else generation,
                member_id=self.member_id if member_id is None else member_id,
                group_instance_id=None,
            ),
            HEARTBEAT,
        )
        return int(response.error_code)


def rebalance(members: list[WireMember]) -> float:
    """Join every member (in list order) and sync them; seconds from sending the last
    JoinGroup until the last SyncGroup answer arrived."""
    for member in members[:-1]:
        member.send_join()
    started = time.perf_counter()
    members[-1].send_join()
    for member in members:
        member.receive_join()
    leader = next(m for m in members if m.member_id == m.leader)
    # The leader's "assignor": each member gets its own id back as its assignment.
    for member in members:
        if member is not leader:
            member.send_sync()
    leader.send_sync({mid: mid.encode() for mid in leader.members})
    for member in members:
        member.receive_sync()
    return time.perf_counter() - started
