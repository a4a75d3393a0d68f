"""The bus contract's nats-py example runs as written when copied into a file: every name it uses is
imported or assigned in it (it used `js`, `json`, `datetime` and `nats` without either, so a reader's copy
failed with a NameError before it published anything)."""

from __future__ import annotations

import ast
import builtins
import re

from tests.unit.docs import sources

INTRO = "A minimal submission with nats-py"


def example(readme: str) -> str:
    after = readme[readme.index(INTRO) :]
    found = re.search(r"```python\n(.*?)```", after, re.S)
    assert found is not None, "the bus contract's example has no python block"
    return found.group(1)


def undefined_names(code: str) -> set[str]:
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - defined


def test_the_bus_example_defines_every_name_it_uses_and_runs_its_coroutine() -> None:
    code = example(sources.README.read_text())
    assert not undefined_names(code), undefined_names(code)
    assert "asyncio.run(main())" in code or "await " not in code
    assert '"Nats-Msg-Id"' in code and "switchyard.task.submitted" in code


def test_the_bus_example_can_run_twice_and_reads_its_result_from_its_durable_consumer() -> None:
    """Its event id and task id were literals (`ext-42`, `job42`): a second run's publish was de-duplicated
    by the server (and its task, whose result was on the stream, not run again), so it waited its 120 s
    for nothing. And it heard the result on a core subscription, lost if it was disconnected then; the
    README names the integrator's durable consumer as the way a result waits for it."""
    code = example(sources.README.read_text())
    tree = ast.parse(code)
    literal_ids = [
        value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values, strict=True)
        if isinstance(key, ast.Constant) and key.value in ("id", "task_id", "Nats-Msg-Id")
        if isinstance(value, ast.Constant)
    ]
    assert not literal_ids, f"the example's ids are literals: {literal_ids}"
    assert "uuid" in code
    assert "pull_subscribe(" in code and "durable=" in code and ".ack()" in code
    assert "_INBOX_integrator." in code, "a pull consumer's requests need the user's inbox prefix too"
