"""Property-based fuzz of the served app's own OpenAPI schema: no generated request gets a 5xx.

Schemathesis reads /openapi.json from the real Ray Serve app and, per operation, sends the
schema's examples, its boundary ("coverage") cases and `MAX_EXAMPLES` generated ones, valid
and invalid alike, all with a fixed seed so that CI runs the same cases every time. The test
key has every API scope, so generated requests reach the handlers instead of stopping at
401. The number of cases sent is printed at the end of the run.

Then the stateful run: schemathesis builds a state machine from the OpenAPI links
(serve_app/users.py `user_links`) and walks sequences such as analyse-and-store -> report ->
export -> erase -> report, each step's `user_id` taken from the step before it. Every step
must answer below 500 too. At least `MIN_CASES` cases per run, stateful steps included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput

MAX_EXAMPLES = 60  # generated cases per operation, on top of examples and boundary cases
SEED = 20261125
STATEFUL_EXAMPLES = 60  # sequences per round, up to `STATEFUL_STEPS` steps each
STATEFUL_STEPS = 8
STATEFUL_CASES = 400  # stateful steps per run, over at most `STATEFUL_ROUNDS` rounds
STATEFUL_ROUNDS = 20
MIN_CASES = 1_000  # stateless and stateful together, per run
CASES: Counter[str] = Counter()
LINKED: Counter[str] = Counter()  # stateful steps whose user_id came from an earlier answer

schema = schemathesis.pytest.from_fixture("served_schema")


@pytest.fixture(scope="module")
def served_schema(serve_url: str) -> object:
    config = SchemathesisConfig.from_dict(
        {"seed": SEED, "generation": {"max-examples": MAX_EXAMPLES}, "request-timeout": 30}
    )
    return schemathesis.openapi.from_url(f"{serve_url}/openapi.json", config=config)


@schema.parametrize()
def test_no_server_error(case: schemathesis.Case, api_headers: dict[str, str]) -> None:
    response = case.call(headers=api_headers)
    CASES[str(response.status_code)] += 1
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )


def test_stateful_sequences_never_get_a_server_error(
    served_schema: schemathesis.BaseSchema, api_headers: dict[str, str]
) -> None:
    """Walk linked sequences until `STATEFUL_CASES` steps ran; none answers 5xx.

    The server keeps state between sequences (a user erased stays erased, a user's rate
    fills), so Hypothesis, which replays a sequence's prefix to explore from it, may see a
    different answer the second time and stop the round as flaky; schemathesis' own runner
    starts a new round then, and so does this test. 5xx answers are collected as they happen,
    so a replay that hides one cannot hide it from the final assertion.
    """
    server_errors: list[str] = []

    class Sequences(served_schema.as_state_machine()):  # type: ignore[misc]
        def step(self, input: StepInput) -> StepOutput:
            if input.transition is not None and input.is_applied:
                LINKED[input.case.operation.label] += 1
            return super().step(input)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"headers": api_headers}

        def validate_response(
            self, response: Response, case: schemathesis.Case, **_: object
        ) -> None:
            CASES[f"stateful {response.status_code}"] += 1
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

    settings = hypothesis.settings(
        max_examples=STATEFUL_EXAMPLES,
        stateful_step_count=STATEFUL_STEPS,
        phases=[hypothesis.Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    for round_ in range(STATEFUL_ROUNDS):
        if stateful_cases() >= STATEFUL_CASES:
            break
        try:
            hypothesis.seed(SEED + round_)(Sequences).run(settings=settings)
        except (hypothesis.errors.Flaky, hypothesis.errors.FlakyStrategyDefinition):
            continue  # a replay met changed server state: next round, as schemathesis does
    assert not server_errors, server_errors
    assert stateful_cases() >= STATEFUL_CASES, f"only {stateful_cases()} stateful steps ran"
    linked_user_steps = sum(n for label, n in LINKED.items() if "/users/" in label)
    assert linked_user_steps, f"no step followed a link into the users API: {dict(LINKED)}"


def stateful_cases() -> int:
    return sum(n for status, n in CASES.items() if status.startswith("stateful"))


@pytest.fixture(scope="module", autouse=True)
def case_budget(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module: the fuzz sent its cases (at least half the budget of each operation
    that ran), and the run says how many, whatever order or subset of tests ran."""
    yield
    fuzzed = [i for i in request.session.items if i.name.startswith("test_no_server_error")]
    total = sum(CASES.values())
    per_status = ", ".join(f"{status}: {n}" for status, n in sorted(CASES.items()))
    linked = ", ".join(f"{label}: {n}" for label, n in sorted(LINKED.items()))
    print(f"\nschemathesis: {total} cases ({per_status})")
    print(f"schemathesis: {sum(LINKED.values())} stateful steps followed a link ({linked})")
    assert total >= len(fuzzed) * MAX_EXAMPLES // 2, "the fuzz sent too few cases"
    if len(fuzzed) > 1 and any(i.name.startswith("test_stateful") for i in request.session.items):
        assert total >= MIN_CASES, f"the fuzz sent {total} cases, fewer than {MIN_CASES}"
