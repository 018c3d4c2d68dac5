"""Every number a Distillfile can hold is bounded by the schema, and every template is rendered
at validate time: huge values, overflowing seeds, vanishing temperatures and raising templates
are located errors (exit 1) before anything runs, never a hang or an internal error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from distill.compiler.cli import main
from distill.compiler.schema import load_schema
from tests.conftest import with_overrides


def _numbers(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        types = node.get("type")
        if types in ("integer", "number") or (isinstance(types, list) and {"integer", "number"} & set(types)):
            yield path, node
        for key, value in node.items():
            yield from _numbers(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numbers(value, f"{path}/{i}")


def test_every_number_in_the_schema_has_an_upper_bound() -> None:
    numbers = list(_numbers(load_schema()))
    assert len(numbers) > 30
    unbounded = [path for path, node in numbers if "maximum" not in node and "exclusiveMaximum" not in node]
    assert unbounded == []


@pytest.mark.parametrize("overrides, words", [
    ({"train.effective_batch_size": 10**12}, "train.effective_batch_size must be <= 65536 (got 1000000000000)"),
    ({"seed": 2**64}, "seed must be <= 4294967295 (got 18446744073709551616)"),
    ({"loss.kl": {"temperature": 1e-30}}, "loss.kl.temperature must be >= 0.1 (got 1e-30)"),
    ({"train.max_steps": 10**15}, "train.max_steps must be <= 10000000"),
    ({"loss.kl": {"top_k": 10**9}}, "loss.kl.top_k must be <= 1048576 (got 1000000000)"),
])
def test_out_of_range_numbers_are_located(project: Callable[[Any], Path], min_spec: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str], overrides: dict[str, Any],
                                          words: str) -> None:
    spec = with_overrides(min_spec, {"teacher": {"model": "org/teacher", "revision": "abc"}, **overrides})
    path = project(spec)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:" in err and words in err


@pytest.mark.parametrize("template, words", [
    ("{{ raise_exception('boom') }}", "fails on a plain user/assistant conversation: TemplateError: boom"),
    ("{{ messages[7]['content'] }}", "fails on a plain user/assistant conversation"),
    ("{% for m in messages %}{{ m.content | nosuchfilter }}{% endfor %}", "is not a valid Jinja template"),
])
def test_chat_templates_are_rendered_at_validate_time(project: Callable[[Any], Path], min_spec: dict[str, Any],
                                                      capsys: pytest.CaptureFixture[str], template: str,
                                                      words: str) -> None:
    path = project(with_overrides(min_spec, {"student.chat_template": template}))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:" in err and f"student.chat_template {words}" in err


def test_a_real_chat_template_renders(project: Callable[[Any], Path], min_spec: dict[str, Any],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Gemma's template raises on a system turn and checks alternation: distill's turns pass."""
    gemma = ("{{ bos_token }}{% for message in messages %}"
             "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
             "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
             "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
             "{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
             "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")
    path = project(with_overrides(min_spec, {"student.chat_template": gemma}))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("prompt", ["{chunk} {n:>999999999}", "{chunk!r}", "{chunk:x<5}"])
def test_a_synthesis_prompt_takes_plain_placeholders_only(project: Callable[[Any], Path], min_spec: dict[str, Any],
                                                         capsys: pytest.CaptureFixture[str], prompt: str) -> None:
    spec = with_overrides(min_spec, {"teacher": {"model": "org/teacher", "revision": "abc"},
                                     "data.synthesis": {"prompt": prompt}})
    path = project(spec)
    assert main(["validate", str(path)]) == 1
    assert "data.synthesis.prompt formats" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, field", [
    ({"student.model": "x" * 5000}, "student.model"),
    ({"student": {"random": {"config": "x" * 300}}}, "student.random.config"),
    ({"student.chat_template": "x" * 300 + ".jinja"}, "student.chat_template"),
])
def test_a_path_past_the_systems_limits_is_located(project: Callable[[Any], Path], min_spec: dict[str, Any],
                                                   capsys: pytest.CaptureFixture[str], overrides: dict[str, Any],
                                                   field: str) -> None:
    """Found by benchmarks/fuzz.py: the look-up raised ENAMETOOLONG (exit 70)."""
    path = project(with_overrides(min_spec, overrides))
    assert main(["validate", str(path)]) == 1
    assert f"{field} is too long to be a path" in capsys.readouterr().err
