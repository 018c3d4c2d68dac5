"""The JSON files distill writes for itself and reads back: each a frozen dataclass with its kind
and version in the file, one reader (``Record.read``) that checks both and the fields, and a JSON
Schema shipped in ``docs/records/`` (``python -m distill.compiler.records docs/records`` writes
them). The Distillfile is the input side's record; these are the output side's."""
