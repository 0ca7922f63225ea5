"""Topic exchange: binding keys are dot-separated words where ``*`` matches exactly one
word and ``#`` matches zero or more, matched with a trie of words.

Routes are memoised per routing key because producers reuse a handful of keys; any
binding change clears the memo.
"""

from __future__ import annotations

from collections.abc import Iterable

from portask.broker.amqp.exchanges.base import Binding, Destination, Exchange, HeadersSource

_MEMO_LIMIT = 4096


def _words(key: str) -> list[str]:
    """RabbitMQ splits an empty key into no words at all, not one empty word."""
    return key.split(".") if key else []


class _Node:
    __slots__ = ("children", "destinations")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        # destination id -> [destination, bindings ending here]
        self.destinations: dict[int, list[object]] = {}


class TopicExchange(Exchange):
    kind = "topic"

    def __init__(self, name: str, **flags: object) -> None:
        super().__init__(name, **flags)  # type: ignore[arg-type]
        self._root = _Node()
        self._memo: dict[str, tuple[Destination, ...]] = {}

    def route(self, routing_key: str, headers: HeadersSource) -> Iterable[Destination]:
        hit = self._memo.get(routing_key)
        if hit is not None:
            return hit
        found: dict[int, Destination] = {}
        self._match(self._root, _words(routing_key), 0, found)
        result = tuple(found.values())
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[routing_key] = result
        return result

    def _match(self, node: _Node, words: list[str], i: int, found: dict[int, Destination]) -> None:
        children = node.children
        if i == len(words):
            for ident, entry in node.destinations.items():
                found[ident] = entry[0]  # type: ignore[assignment]
            # A trailing '#' also matches zero remaining words.
            hash_node = children.get("#")
            if hash_node is not None:
                self._match(hash_node, words, i, found)
            return
        word = words[i]
        exact = children.get(word)
        if exact is not None:
            self._match(exact, words, i + 1, found)
        star = children.get("*")
        if star is not None:
            self._match(star, words, i + 1, found)
        hash_node = children.get("#")
        if hash_node is not None:
            # '#' swallows zero or more words: try every split point.
            for j in range(i, len(words) + 1):
                self._match(hash_node, words, j, found)

    def _index_add(self, binding: Binding) -> None:
        node = self._root
        for word in _words(binding.routing_key):
            node = node.children.setdefault(word, _Node())
        entry = node.destinations.setdefault(id(binding.destination), [binding.destination, 0])
        entry[1] += 1  # type: ignore[operator]
        self._memo.clear()

    def _index_remove(self, binding: Binding) -> None:
        path: list[tuple[_Node, str]] = []
        node = self._root
        for word in _words(binding.routing_key):
            child = node.children.get(word)
            if child is None:
                return
            path.append((node, word))
            node = child
        entry = node.destinations.get(id(binding.destination))
        if entry is not None:
            entry[1] -= 1  # type: ignore[operator]
            if entry[1] == 0:
                del node.destinations[id(binding.destination)]
        # Prune empty branches so a churn of bindings does not grow the trie forever.
        for parent, word in reversed(path):
            child = parent.children[word]
            if child.children or child.destinations:
                break
            del parent.children[word]
        self._memo.clear()
