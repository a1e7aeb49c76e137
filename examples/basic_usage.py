"""The ResultsManager documentation's "Basic Usage", on the default store.

Run it with ``python examples/basic_usage.py``. The store is ``RESULTS_FLOW_STORE``
when set, else the embedded SQLite store in ``./results_store/results.db``.
"""

from __future__ import annotations

from pydantic import BaseModel

from results_flow import ResultsManager, SetBehavior, register_model


@register_model
class Person(BaseModel):
    name: str
    age: int
    email: str | None = None


@register_model
class Team(BaseModel):
    name: str
    members: list[Person]


def main() -> None:
    results = ResultsManager()
    print(f"store: {results.backend.location}")

    person = Person(name="John Doe", age=30, email="john@example.com")
    written = results.set("people/john", person, behavior=SetBehavior.OVERWRITE)
    print(f"set people/john -> {'written' if written else 'kept'}")

    team = Team(
        name="Engineering",
        members=[Person(name="John Doe", age=30), Person(name="Jane Smith", age=28)],
    )
    written = results.set("teams/engineering", team, behavior=SetBehavior.SKIP_IF_EXISTS)
    print(f"set teams/engineering -> {'written' if written else 'already stored, skipped'}")

    john = results.get("people/john")
    assert isinstance(john, Person)
    print(f"Retrieved: {john.name}, {john.age}")
    print(f"Available results: {results.list_ids()}")
    print(f"Teams: {results.list_ids('teams')}")
    print("Jane's data exists" if results.exists("people/jane") else "Jane's data not found")
    results.delete("people/john")
    print(f"deleted people/john; remaining: {results.list_ids()}")
    results.close()


if __name__ == "__main__":
    main()
