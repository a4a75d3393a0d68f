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
