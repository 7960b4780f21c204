"""Property-based fuzz of the served app's own OpenAPI schema: no generated request gets a 5xx.

Schemathesis reads /openapi.json from the real Ray Serve app and, per operation, sends the
schema's examples, its boundary ("coverage") cases and `MAX_EXAMPLES` generated ones, valid
and invalid alike, all with a fixed seed so that CI runs the same cases every time. The test
key has every API scope, so generated requests reach the handlers instead of stopping at
401. The number of cases sent is printed at the end of the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

MAX_EXAMPLES = 30  # generated cases per operation, on top of examples and boundary cases
SEED = 20261125
CASES: Counter[str] = Counter()

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


@pytest.fixture(scope="module", autouse=True)
def case_budget(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module: the fuzz sent its cases (at least half the budget of each operation
    that ran), and the run says how many, whatever order or subset of tests ran."""
    yield
    fuzzed = [i for i in request.session.items if i.name.startswith("test_no_server_error")]
    total = sum(CASES.values())
    per_status = ", ".join(f"{status}: {n}" for status, n in sorted(CASES.items()))
    print(f"\nschemathesis: {total} cases ({per_status})")
    assert total >= len(fuzzed) * MAX_EXAMPLES // 2, "the fuzz sent too few cases"
