"""Reading a Modelfile as Ollama does, for the tests of what distill writes."""

from __future__ import annotations

from pathlib import Path


def parse_modelfile(path: Path) -> list[tuple[str, str]]:
    """Ollama's Modelfile reading (its parser package), for what distill writes: a command name,
    white space, then a value to the end of the line, or between quotes, or between triple quotes
    across lines; quotes are stripped with no escape processing."""
    commands, text = [], path.read_text("utf-8")
    while text.strip():
        name, _, text = text.lstrip().partition(" ")
        if text.startswith('"""'):
            value, _, text = text[3:].partition('"""')
        else:
            line, _, text = text.partition("\n")
            value = line.strip()
            head, _, quoted = value.partition(" ")
            if name == "PARAMETER" and quoted.startswith('"') and quoted.endswith('"'):
                value = f"{head} {quoted[1:-1]}"
        commands.append((name, value))
    return commands
