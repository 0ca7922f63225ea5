from __future__ import annotations

import pytest

from portask.broker.kafka.principals import (
    MappingRuleError,
    NoMatchingRule,
    parse_rules,
    principal_from_subject,
)


def test_default_rule_keeps_the_whole_subject() -> None:
    rules = parse_rules("DEFAULT")
    assert principal_from_subject("CN=app,OU=dev,O=acme", rules) == "User:CN=app,OU=dev,O=acme"


def test_first_matching_rule_rewrites_and_later_ones_are_not_tried() -> None:
    rules = parse_rules("RULE:^CN=(.*?),OU=(.*?),O=(.*)$/$1@$2/L, RULE:^CN=(.*?),.*$/$1/U, DEFAULT")
    assert principal_from_subject("CN=App,OU=Dev,O=Acme", rules) == "User:app@dev"
    assert principal_from_subject("CN=svc,O=Acme", rules) == "User:SVC"
    assert principal_from_subject("O=Acme", rules) == "User:O=Acme"


def test_a_pattern_must_match_the_whole_subject() -> None:
    rules = parse_rules("RULE:CN=(admin)/$1/")
    with pytest.raises(NoMatchingRule):
        principal_from_subject("CN=admin,O=acme", rules)
    assert principal_from_subject("CN=admin", rules) == "User:admin"


def test_escaped_slashes_and_commas_stay_in_the_pattern() -> None:
    rules = parse_rules(r"RULE:^CN=([a-z]+)\/x,O=(.*)$/$2-$1/")
    assert principal_from_subject("CN=abc/x,O=z", rules) == "User:z-abc"


@pytest.mark.parametrize("text", ["", "CN=x", "RULE:^(a$/x/", "RULE:a/b/Q", "DEFAULT,,"])
def test_rules_that_do_not_parse_are_refused(text: str) -> None:
    with pytest.raises(MappingRuleError):
        parse_rules(text)
