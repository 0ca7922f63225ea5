"""Sort py-spy samples of a broker under AMQP load into the stages of the hot path.

    py-spy record --native -r 250 -f raw -o prof.txt -- .venv/bin/python -m portask serve ...
    (run tools/loadtest.py amqp against it, then stop py-spy with SIGINT)
    .venv/bin/python -m tests.benchmarks.amqp_profile_stages prof.txt

Only samples on the AMQP path count (a Portask AMQP frame on the stack, or uvloop
reading or writing a socket); start-up and idle waits in epoll are left out. A sample
belongs to the deepest stage named on its stack, so "decode publish" excludes the
routing it calls and "write" is mostly the socket write syscall itself.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# (stage, frames that mark it), checked from the leaf of a stack upward.
# A frame's name ends with a space, or a dot when a comprehension inside it is the frame.
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ack (settle, store ack, re-dispatch)", re.compile(
        r"^(Channel\.(on_basic_ack|_settle|_take|_settle_range)|MemoryStore\.ack|Queue\.ack"
        r"|Queue\.ack_quietly|Unacked\.\w+|_Run\.\w+)[ .]")),
    ("deliver encode (Basic.Deliver, header, body frames)", re.compile(
        r"^(Channel\.deliver|ChannelConsumer\.(deliver|deliver_batch)|Queue\._deliver"
        r"|content_frames|deliver_payload|deliver_frames)[ .]")),
    ("enqueue (queue publish, store push, consumer choice)", re.compile(
        r"^(Queue\.(publish|publish_many|dispatch|_dispatch_one|_ready_consumer)"
        r"|MemoryStore\.(push|push_delivered|push_many|pop|take|untake|check_memory)"
        r"|ChannelConsumer\.(ready|credit))[ .]")),
    ("route (exchange lookup and route, vhost publish)", re.compile(
        r"^(VirtualHost\.(publish|publish_many|memory_room|route|exchange"
        r"|exchange_for_publish)|\w*Exchange\.route|Channel\._route)[ .]")),
    ("decode publish (method, content header, body)", re.compile(
        r"^(Channel\.(on_basic_publish|on_content_header|on_content_body|_complete_publish"
        r"|publish_whole|publish_bodies|repeatable|remember_whole)|parse_publish"
        r"|parse_content_header|basic_fields|Message\.__init__)[ .]")),
    ("write (join + transport.write, commit point)", re.compile(r"^AmqpConnection\._flush ")),
    ("frame split (data_received, _parse, _frames, a run's bodies)", re.compile(
        r"^AmqpConnection\.(data_received|_parse|_take|_frames|_whole_publish"
        r"|_channel_method) ")),
)
_ON_PATH = re.compile(r"protocols/amqp|broker/amqp|uv__read|uv__write")


def stage(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, marker in STAGES:
            if marker.search(frame):
                return name
    return "socket read (uvloop) and other"


def breakdown(path: str) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, n = line.rstrip().rpartition(" ")
            if not _ON_PATH.search(stack):
                continue
            counts[stage(stack)] += int(n)
            total += int(n)
    return counts, total


if __name__ == "__main__":
    counts, total = breakdown(sys.argv[1])
    for name, n in counts.most_common():
        print(f"| {name} | {n} | {100 * n / total:.1f}% |")
    print(f"| samples on the AMQP path | {total} | |")
