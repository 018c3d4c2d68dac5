"""Commands that run an export, for the model card's "how to run" section.

llama.cpp's program names are those of the llama.cpp that llama-cpp-python 0.3.36 vendors (the one
that verifies distill's GGUF files): ``llama-cli`` chats (conversation mode is all it does, and it
accepts no ``-cnv``), ``llama-completion`` continues plain text.
"""

from __future__ import annotations

import shlex

from distill.compiler.records.manifest import Manifest

# The wording of gguf_tokens' chat_template check, recorded in the manifest's verification: a
# model without a chat template, and a template llama.cpp's built-in renderer does not reproduce.
_NO_TEMPLATE = "not applicable: the model has no chat template"
_NEEDS_JINJA = "llama-cli needs --jinja"


def llama_cpp_command(manifest: Manifest, model_path: str) -> str:
    """The llama.cpp command line for ``model_path``, a GGUF file of the export ``manifest``
    describes (its manifest.json, as loaded).

    With a chat template that llama.cpp's built-in renderer reproduces: ``llama-cli -m FILE``;
    with one it does not, or when the manifest does not say: ``llama-cli -m FILE --jinja`` (the
    template itself, rendered by llama.cpp's Jinja engine; the default in newer llama.cpp, needed
    in older ones); without a chat template, a plain-text continuation with ``llama-completion``.
    """
    check = manifest.check("chat_template")
    detail = check.detail if check else ""
    model = shlex.quote(model_path)
    if detail.startswith(_NO_TEMPLATE):
        return f'llama-completion -m {model} -no-cnv -p "Once upon a time"'
    if check is None or _NEEDS_JINJA in detail:
        return f"llama-cli -m {model} --jinja"
    return f"llama-cli -m {model}"
