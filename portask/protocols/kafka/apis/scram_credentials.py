"""DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51), KIP-554.

DescribeUserScramCredentials, version 0 (flexible):
    v0  the users to describe (null or empty: every user with a credential); per user
        each mechanism and its iteration count, never the keys
AlterUserScramCredentials, version 0 (flexible):
    v0  deletions (user, mechanism) and upsertions (user, mechanism, iterations, salt,
        salted password: the client does the slow PBKDF2, the broker never sees the
        password)

Answered as a Kafka 3.7 (KRaft) broker answers: describing needs DESCRIBE and altering
ALTER on the cluster (else CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization
failed."); a user named twice in one request gets DUPLICATE_RESOURCE, whatever the
mechanisms; an unknown mechanism UNSUPPORTED_SASL_MECHANISM; fewer than 4096 or more
than 16384 iterations UNACCEPTABLE_CREDENTIAL; deleting or describing a credential that
does not exist RESOURCE_NOT_FOUND, each with Kafka's text. Credentials live in the one
user store (durable in the definitions store) and serve SCRAM logins at once.
"""

from __future__ import annotations

from typing import Any

from portask.broker.kafka.acls import Operation
from portask.broker.user_store import UserStore
from portask.broker.users import SCRAM_HASHES, credential_from_salted
from portask.protocols.kafka import registry
from portask.protocols.kafka.api_keys import ApiKey
from portask.protocols.kafka.authorization import cluster_allowed
from portask.protocols.kafka.context import RequestContext
from portask.protocols.kafka.errors import ErrorCode
from portask.protocols.kafka.registry import api
from portask.protocols.kafka.responses import NO_THROTTLE

# Kafka's ScramMechanism type codes (0 is UNKNOWN).
MECHANISMS = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
MECHANISM_TYPES = {name: code for code, name in MECHANISMS.items()}
MIN_ITERATIONS = 4096  # ScramMechanism.minIterations() for both mechanisms
MAX_ITERATIONS = 16384  # ScramControlManager.MAX_ITERATIONS
CLUSTER_DENIED = "Cluster authorization failed."
DUPLICATE = "A user credential cannot be altered twice in the same request"


def _store(ctx: RequestContext) -> UserStore:
    store = ctx.broker.users
    if store is None:  # the composition root always sets it; a broker without is a bug
        raise RuntimeError("the broker has no user store")
    return store


@api(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, (0, 0))
def describe_user_scram_credentials(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, ctx.api_version)
    if not cluster_allowed(ctx, Operation.DESCRIBE):
        return registry.make(types.DescribeUserScramCredentialsResponse,
                             throttle_time=NO_THROTTLE,
                             error_code=ErrorCode.cluster_authorization_failed,
                             error_message=CLUSTER_DENIED, results=())
    stored = _store(ctx).scram_credentials()
    # Kafka's ScramImage.describe: one entry per distinct name, a repeated name refused.
    wanted: dict[str, bool] = {}
    for user in request.users or ():
        wanted[user.name] = user.name in wanted
    if not request.users:
        wanted = dict.fromkeys(sorted(stored), False)

    def result(name: str, repeated: bool) -> Any:
        error, message, infos = ErrorCode.none, None, ()
        if repeated:
            error = ErrorCode.duplicate_resource
            message = ("Cannot describe SCRAM credentials for the same user twice in a "
                       f"single request: {name}")
        elif name not in stored:
            error = ErrorCode.resource_not_found
            message = f"Attempt to describe a user credential that does not exist: {name}"
        else:
            infos = tuple(
                registry.make(types.CredentialInfo, mechanism=MECHANISM_TYPES[mechanism],
                              iterations=credential.iterations)
                for mechanism, credential in sorted(stored[name].items()))
        return registry.make(types.DescribeUserScramCredentialsResult, user=name,
                             error_code=error, error_message=message,
                             credential_infos=infos)

    return registry.make(types.DescribeUserScramCredentialsResponse,
                         throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                         error_message=None,
                         results=tuple(result(n, r) for n, r in wanted.items()))


@api(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, (0, 0))
def alter_user_scram_credentials(ctx: RequestContext, request: Any) -> Any:
    types = registry.response_types(ApiKey.ALTER_USER_SCRAM_CREDENTIALS, ctx.api_version)

    def result(name: str, error: ErrorCode = ErrorCode.none, message: str | None = None
               ) -> Any:
        return registry.make(types.AlterUserScramCredentialsResult, user=name,
                             error_code=error, error_message=message)

    def answer(results: list[Any]) -> Any:
        return registry.make(types.AlterUserScramCredentialsResponse,
                             throttle_time=NO_THROTTLE, results=tuple(results))

    if not cluster_allowed(ctx, Operation.ALTER):
        names = {d.name for d in request.deletions} | {u.name for u in request.upsertions}
        return answer([result(n, ErrorCode.cluster_authorization_failed, CLUSTER_DENIED)
                       for n in sorted(names)])
    store = _store(ctx)
    deletions, upsertions, errors = _validated(request, store.scram_credentials())
    results = []
    for name, mechanism in deletions.items():
        store.delete_scram(name, mechanism)
        results.append(result(name))
    for name, upsertion in upsertions.items():
        mechanism = MECHANISMS[upsertion.mechanism]
        store.set_scram(name, mechanism, credential_from_salted(
            bytes(upsertion.salted_password), bytes(upsertion.salt), upsertion.iterations,
            SCRAM_HASHES[mechanism]))
        results.append(result(name))
    results += [result(name, error, message) for name, (error, message) in errors.items()]
    return answer(results)


Refusal = tuple[ErrorCode, str]


def _validated(request: Any, stored: dict[str, dict[str, Any]]
               ) -> tuple[dict[str, str], dict[str, Any], dict[str, Refusal]]:
    """ScramControlManager.alterCredentials' checks: (deletions: user -> mechanism,
    upsertions: user -> upsertion, refusals: user -> (code, text))."""
    deletions: dict[str, str] = {}
    upsertions: dict[str, Any] = {}
    errors: dict[str, Refusal] = {}
    for deletion in request.deletions:
        name = deletion.name
        if name in errors:
            continue
        if deletions.pop(name, None) is not None:
            errors[name] = (ErrorCode.duplicate_resource, DUPLICATE)
            continue
        refusal = _name_and_mechanism(name, deletion.mechanism)
        mechanism = MECHANISMS.get(deletion.mechanism, "")
        if refusal is None and mechanism not in stored.get(name, {}):
            refusal = (ErrorCode.resource_not_found,
                       "Attempt to delete a user credential that does not exist")
        if refusal is not None:
            errors[name] = refusal
        else:
            deletions[name] = mechanism
    for upsertion in request.upsertions:
        name = upsertion.name
        if name in errors:
            continue
        if deletions.pop(name, None) is not None or upsertions.pop(name, None) is not None:
            errors[name] = (ErrorCode.duplicate_resource, DUPLICATE)
            continue
        refusal = _name_and_mechanism(name, upsertion.mechanism)
        if refusal is None and upsertion.iterations < MIN_ITERATIONS:
            refusal = (ErrorCode.unacceptable_credential, "Too few iterations")
        elif refusal is None and upsertion.iterations > MAX_ITERATIONS:
            refusal = (ErrorCode.unacceptable_credential, "Too many iterations")
        if refusal is not None:
            errors[name] = refusal
        else:
            upsertions[name] = upsertion
    return deletions, upsertions, errors


def _name_and_mechanism(name: str, mechanism: int) -> Refusal | None:
    if not name:
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    if mechanism not in MECHANISMS:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    return None
