"""The Go text/template subset distill's Ollama TEMPLATEs use, rendered as Go renders it
(expected outputs worked out from the text/template documentation's rules)."""

from __future__ import annotations

import re

import pytest

from distill.backends.go_template import GoTemplateError, render

MESSAGES = [{"Role": "system", "Content": "S"}, {"Role": "user", "Content": "u1"},
            {"Role": "assistant", "Content": "a1"}, {"Role": "user", "Content": "u2"}]
DATA = {"System": "S", "Messages": MESSAGES, "Empty": "", "Zero": 0, "None": [], "Flag": True}


@pytest.mark.parametrize(("template", "expected"), [
    ("plain text", "plain text"),
    # Trim markers take every space, tab and newline on their side, and only there.
    ("a \n\t {{- .System -}} \n b", "aSb"),
    ("a {{ .System }} b", "a S b"),
    ("a\n{{- .System }}\nb", "aS\nb"),
    # if / else if / else, Go's truth: "" 0 and empty lists are false.
    ("{{ if .Empty }}x{{ else if .Zero }}y{{ else if .None }}z{{ else }}w{{ end }}", "w"),
    ("{{ if .System }}yes{{ end }}", "yes"),
    ("{{ if not .Empty }}not{{ end }}", "not"),
    # range sets dot, and $i, $v; $ stays the root inside.
    ("{{ range .Messages }}{{ .Role }},{{ end }}", "system,user,assistant,user,"),
    ("{{ range $i, $m := .Messages }}{{ $i }}={{ $m.Content }}/{{ $.System }};{{ end }}",
     "0=S/S;1=u1/S;2=a1/S;3=u2/S;"),
    # and/or return the deciding argument, as Go does; eq compares with each later argument.
    ('{{ and .System .Empty "x" }}|{{ or .Empty .Zero "z" }}|{{ or .Empty .Zero }}', "|z|0"),
    ('{{ eq .System "T" "S" }} {{ eq .Zero 1 }}', "true false"),
    # len and slice, the "last message" test of Mistral's template.
    ("{{ range $i, $_ := .Messages }}{{ if eq (len (slice $.Messages $i)) 1 }}last={{ .Content }}{{ end }}{{ end }}",
     "last=u2"),
    ("{{ slice .System 0 1 }}{{ len .Messages }}", "S4"),
    # Go string escapes in literals.
    ('{{ "a\\n\\t\\"b\\"" }}', 'a\n\t"b"'),
    ("{{ .Flag }}", "true")])
def test_renders_as_go_does(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


@pytest.mark.parametrize(("template", "words"), [
    ("{{ end }}", "unexpected {{ end }}"),
    ("{{ if .System }}x", "missing {{ end }}"),
    ("{{ if .System }}{{ else }}{{ else }}{{ end }}", "{{ else }} after {{ else }}"),
    ("{{ range .Messages }}{{ else }}{{ end }}", "outside the subset"),
    ('{{ printf "%s" .System }}', "printf with 2 argument(s) is outside the subset"),
    ("{{ .Missing }}", "can't evaluate field Missing"),
    ("{{ $x }}", "undefined variable $x"),
    ('{{ eq .Zero "0" }}', "incompatible types for comparison"),
    ("{{ range .System }}{{ end }}", "range over str"),
    ("{{ .System | len }}", "cannot read"),
    ("{{ .Messages }}", "printing a list is outside the subset")])
def test_outside_the_subset_is_an_error(template: str, words: str) -> None:
    with pytest.raises(GoTemplateError, match=re.escape(words)):
        render(template, DATA)
