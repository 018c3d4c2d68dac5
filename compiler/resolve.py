"""Resolve teacher and student to config, tokenizer and generation files, without weights.

A model is a local folder, a hub id (looked up in the Hugging Face cache first, then fetched: only
the small JSON/tokenizer files, never weights), or a ``random`` config. Every file read is recorded
with its sha256 so the lock pins exactly what was planned. Failures are located ``Finding``s.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from distill.compiler import cut
from distill.compiler.checks import Finding, resolve_inside
from distill.compiler.digest import FileDigest, digest_file
from distill.compiler.errors import DistillError
from distill.compiler.fsutil import write_atomic
from distill.compiler.records.record import read_json
from distill.compiler.spec import Spec, Student, Teacher

CONFIG = "config.json"
# Tokenizer and generation files, in the order their identity is looked for.
OPTIONAL_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                  "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "generation_config.json",
                  "chat_template.jinja")
_TOKENIZER_IDENTITY = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
ModelKind = Literal["local", "hub", "random", "gguf", "cut"]


@dataclass(frozen=True)
class ResolvedModel:
    """What the planner knows of a model: its config and the digests of the files it came from.

    Attributes:
        role: "teacher" or "student".
        kind: "local", "hub", "random", "gguf", or "cut" (a student cut from the teacher,
            ``compiler/cut.py``).
        ref: the hub id, the local folder or the random config path, as written; for a cut
            student, the teacher's and the layers kept (``teacher.gguf, layers 0,2``).
        revision: the commit a hub model resolved to; ``None`` for local and random models.
        config: config.json contents.
        files: digests of every file read (a cut student's are its teacher's).
        tokenizer: an identity of the vocabulary: equal identities mean equal token ids.
        chat_template: whether the tokenizer (or the Distillfile) supplies a chat template.
        tokenizer_file: where tokenizer.json is on this machine, when the model has one.
        folder: where the model's files are on this machine: a local model's folder, the folder
            made from a GGUF file (see ``backends/gguf_import``), a hub model's snapshot folder in
            the Hugging Face cache, a cut student's teacher's; ``None`` for random models.
        offline: the hub was not consulted (``--offline`` or ``HF_HUB_OFFLINE``): loading must
            not consult it either.
        cut_from: the resolved teacher a cut student is cut from; ``None`` for other models.
        layers: the teacher layers a cut student keeps, in order; empty for other models.
    """

    role: str
    kind: ModelKind
    ref: str
    revision: str | None
    config: dict[str, Any]
    files: tuple[FileDigest, ...]
    tokenizer: str
    chat_template: bool
    tokenizer_file: Path | None = None
    folder: Path | None = None
    offline: bool = False
    cut_from: ResolvedModel | None = None
    layers: tuple[int, ...] = ()


class ResolveFailed(Exception):
    """Carries the findings that stopped resolution."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(f"{len(findings)} model(s) could not be resolved")
        self.findings = findings


def resolve_models(spec: Spec, root: Path, offline: bool) -> dict[str, ResolvedModel]:
    """Resolve every model the spec names; raises ``ResolveFailed`` with all failures. The teacher
    comes first: a student cut from it is resolved from it (a teacher that failed was reported)."""
    resolved: dict[str, ResolvedModel] = {}
    failures: list[Finding] = []
    for role in ("teacher", "student"):
        model: Teacher | None = getattr(spec, role)
        if model is None:
            continue
        try:
            if isinstance(model, Student) and model.from_teacher is not None:
                if "teacher" in resolved:
                    resolved[role] = _resolve_cut(model, resolved["teacher"])
            else:
                resolved[role] = _resolve(role, model, root, offline, spec)
        except _Missing as missing:
            failures.append(missing.finding)
    if failures:
        raise ResolveFailed(failures)
    return resolved


class _Missing(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


def _resolve(role: str, model: Teacher, root: Path, offline: bool, spec: Spec) -> ResolvedModel:
    if model.random is not None:
        return _resolve_random(role, model, root, spec)
    assert model.model is not None
    local = resolve_inside(root, os.path.expanduser(model.model))
    if local is not None and local.is_dir():
        files = _local_files(local)
        return replace(_assemble(role, "local", model.model, None, files, model), folder=local)
    if local is not None and local.is_file() and local.suffix == ".gguf":
        return _resolve_gguf(role, model, local, root)
    offline = offline or hub_offline()
    files, commit = _hub_files(role, model, offline)
    resolved = _assemble(role, "hub", model.model, commit, files, model)
    return replace(resolved, folder=files[CONFIG].parent, offline=offline)


def _resolve_gguf(role: str, model: Teacher, path: Path, root: Path) -> ResolvedModel:
    """A GGUF file: its config and tokenizer files written once into ``.distill/gguf/<sha256>``
    (content-addressed: a changed file gets a new folder), the file itself pinned by its digest."""
    from distill.backends import gguf_import
    from distill.backends.gguf_metadata import GgufFormatError, read_metadata

    source = digest_file(path, model.model or path.name)
    folder = root / ".distill" / "gguf" / source.sha256[:16]
    if not all((folder / name).is_file() for name in gguf_import.FILES):
        try:
            meta = read_metadata(path)
        except (OSError, GgufFormatError) as error:
            raise _Missing(Finding((role, "model"), f"{role}.model {model.model!r}: {error}")) from None
        reason = gguf_import.refusal(meta)
        if reason is not None:
            raise _Missing(Finding((role, "model"), f"{role}.model {model.model!r}: {reason}",
                                   "point it at the Hugging Face model folder or hub id instead"))
        for name, text in gguf_import.metadata_files(meta).items():
            write_atomic(folder / name, text)
    resolved = _assemble(role, "gguf", model.model or path.name, None, _local_files(folder), model)
    return replace(resolved, files=(source, *resolved.files), folder=folder)


def _resolve_cut(student: Student, teacher: ResolvedModel) -> ResolvedModel:
    """A student cut from the resolved teacher: the teacher's files, tokenizer and revision, and
    the teacher's config with only the kept layers (``compiler/cut.py``); its weights are written
    at the first load (``runtime/models.py``). Refused here, located, when the teacher's
    architecture cannot be cut or a listed layer is not one of the teacher's."""
    assert student.from_teacher is not None
    path = ("student", "from_teacher")
    refused = cut.refusal(teacher.config)
    if refused is not None:
        raise _Missing(Finding(path, f"student.from_teacher cannot cut teacher {teacher.ref!r}: {refused}",
                               f"cut a teacher of model_type {', '.join(cut.CUTTABLE)}, or give the student "
                               "its own model"))
    count = teacher.config["num_hidden_layers"]
    kept = cut.kept_layers(student.from_teacher.layers, count)
    beyond = [i for i, layer in enumerate(kept) if layer >= count]
    if beyond:
        shown = ", ".join(str(kept[i]) for i in beyond)
        raise _Missing(Finding(path + ("layers", beyond[0]), f"student.from_teacher.layers names layer(s) {shown}, "
                               f"but teacher {teacher.ref!r} has {count} layers (0 to {count - 1})",
                               f"list layers 0 to {count - 1}, or write `layers: {{every: n}}`"))
    assert teacher.folder is not None  # the meaning checks refused a random teacher
    template = student.chat_template is not None or _has_chat_template(_local_files(teacher.folder))
    return replace(teacher, role="student", kind="cut", ref=cut.describe(teacher.ref, kept),
                   config=cut.cut_config(teacher.config, kept), chat_template=template, cut_from=teacher,
                   layers=kept)


def _local_files(folder: Path) -> dict[str, Path]:
    names = (CONFIG, *OPTIONAL_FILES)
    return {name: folder / name for name in names if (folder / name).is_file()}


def _hub_files(role: str, model: Teacher, offline: bool) -> tuple[dict[str, Path], str]:
    """Config and tokenizer files of a hub model: from the cache when its config is there,
    otherwise fetched (small files only) after one quick look-up that pins the commit. The
    snapshot folder's name is the commit the revision resolved to."""
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # its retry warnings would bury our one clear message
    repo, revision = model.model or "", model.revision or "main"
    cached = _cached_files(repo, revision)
    if CONFIG in cached:
        return cached, cached[CONFIG].parent.name
    if offline:
        raise _Missing(_unreachable(role, repo, revision, "the hub is not consulted (offline)"))
    commit = _lookup_commit(role, repo, revision)
    return _download(repo, commit), commit


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it (any of its true spellings)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _cached_files(repo: str, revision: str) -> dict[str, Path]:
    from huggingface_hub import try_to_load_from_cache

    found = {}
    for name in (CONFIG, *OPTIONAL_FILES):
        path = try_to_load_from_cache(repo, name, revision=revision)
        if isinstance(path, str):
            found[name] = Path(path)
    return found


def _lookup_commit(role: str, repo: str, revision: str) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(repo, revision=revision, timeout=10)
    except RevisionNotFoundError:
        raise _Missing(Finding((role, "revision"), f"{role}.model {repo!r} has no revision {revision!r}")) from None
    except RepositoryNotFoundError:
        raise _Missing(Finding((role, "model"), f"{role}.model {repo!r} does not exist on the hub (or is "
                               "private: set HF_TOKEN)")) from None
    except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
        raise _Missing(_unreachable(role, repo, revision,
                                    f"the hub could not be reached ({type(exc).__name__})")) from None
    return str(info.sha)


def _download(repo: str, commit: str) -> dict[str, Path]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    files = {}
    for name in (CONFIG, *OPTIONAL_FILES):
        try:
            files[name] = Path(hf_hub_download(repo, name, revision=commit))
        except EntryNotFoundError:
            continue  # optional files a repo does not have; a missing config.json is reported later
    return files


def _unreachable(role: str, repo: str, revision: str, why: str) -> Finding:
    return Finding(
        (role, "model"),
        f"{role}.model {repo!r} (revision {revision}): config.json is not in the Hugging Face cache "
        f"and {why}",
        f"on a machine with access run `hf download {repo} config.json tokenizer.json "
        f"tokenizer_config.json --revision {revision}` (no weights needed to plan), or point "
        f"{role}.model at a local folder")


def _resolve_random(role: str, model: Teacher, root: Path, spec: Spec) -> ResolvedModel:
    assert model.random is not None
    config_path = resolve_inside(root, model.random.config)
    assert config_path is not None  # the meaning checks refused paths outside the folder
    if config_path.is_dir():
        config_path = config_path / CONFIG
    files = {CONFIG: config_path}
    if model.random.tokenizer is not None:
        tokenizer = resolve_inside(root, model.random.tokenizer)
        assert tokenizer is not None
        # Only the tokenizer's files: a tokenizer folder that is a whole model (another model's
        # output, say) must not lend this model its config.json.
        borrowed = _local_files(tokenizer) if tokenizer.is_dir() else {"tokenizer.json": tokenizer}
        files.update({name: path for name, path in borrowed.items() if name != CONFIG})
    return _assemble(role, "random", model.random.config, None, files, model, spec, root)


def _assemble(role: str, kind: Literal["local", "hub", "random", "gguf"], ref: str, commit: str | None,
              files: dict[str, Path], model: Teacher, spec: Spec | None = None,
              root: Path | None = None) -> ResolvedModel:
    if CONFIG not in files:
        raise _Missing(Finding((role, "model"), f"{role}.model {ref!r} has no config.json"))
    try:
        config = read_json(files[CONFIG])
    except DistillError as exc:
        raise _Missing(Finding((role,), f"{role} config.json cannot be read: {exc.message}")) from None
    if not isinstance(config, dict):
        raise _Missing(Finding((role,), f"{role} config.json is not a JSON object"))
    problem = _tokenizer_problem(files)
    if problem is not None:
        raise _Missing(Finding((role,), f"{role} {problem}", "use the tokenizer files the model was saved with"))
    digests = tuple(digest_file(path, f"{ref}/{name}" if kind != "random" else _shown(path, root))
                    for name, path in sorted(files.items()))
    identity = tokenizer_identity(files) or (
        _trained_tokenizer_identity(config, spec) if kind == "random" else f"no tokenizer files in {ref}")
    template = model.chat_template is not None or _has_chat_template(files)
    return ResolvedModel(role, kind, ref, commit, config, digests, identity, template,
                         files.get("tokenizer.json"))


def _tokenizer_problem(files: dict[str, Path]) -> str | None:
    """Why the tokenizer files cannot be used, or ``None``: tokenizer_config.json must be a JSON
    object and tokenizer.json a tokenizer the ``tokenizers`` library loads (the chunk stage and
    every later one load it; a broken one found here costs no extraction)."""
    from tokenizers import Tokenizer

    for name in ("tokenizer_config.json", "tokenizer.json"):
        path = files.get(name)
        if path is None:
            continue
        try:
            if not isinstance(read_json(path), dict):
                return f"{name} is not a JSON object"
            if name == "tokenizer.json":
                Tokenizer.from_file(str(path))
        except DistillError as error:
            return f"{name} cannot be read: {error.message}"
        except Exception as error:  # noqa: BLE001 - tokenizers raises a bare Exception for a bad file
            return f"{name} is not a tokenizer the tokenizers library loads: {error}"
    return None


def _shown(path: Path, root: Path | None) -> str:
    """A random model's file as the lock shows it: relative to the Distillfile's folder, so the
    lock and every stage key are the same wherever the project is checked out."""
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def tokenizer_identity(files: dict[str, Path]) -> str | None:
    """An identity of the token <-> id mapping, so that tokenizers with equal vocabularies but
    different packaging (chat template, model name, padding side) compare equal.

    tokenizer.json: sha256 of its model (vocab, merges), added tokens, normalizer and
    pre-tokenizer, canonicalized; otherwise sha256 of the vocabulary file itself.
    """
    for name in _TOKENIZER_IDENTITY:
        path = files.get(name)
        if path is None:
            continue
        if name == "tokenizer.json":
            data = read_json(path)
            core = {key: data.get(key) for key in ("model", "added_tokens", "normalizer", "pre_tokenizer")}
            text = json.dumps(core, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            return "tokenizer.json:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"{name}:" + digest_file(path, name).sha256
    return None


def _trained_tokenizer_identity(config: dict[str, Any], spec: Spec | None) -> str:
    """A random model without a tokenizer gets a byte-level BPE trained on the sources with the
    config's vocab_size: two such models with one vocab size share one tokenizer."""
    sources = spec.sources if spec is not None else ()
    key = json.dumps([repr(s) for s in sources], sort_keys=True)
    return f"trained-bpe:{config.get('vocab_size')}:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _has_chat_template(files: dict[str, Path]) -> bool:
    """A template in tokenizer_config.json, or in the chat_template.jinja transformers now saves."""
    if "chat_template.jinja" in files:
        return True
    path = files.get("tokenizer_config.json")
    if path is None:
        return False
    try:
        return bool(read_json(path).get("chat_template"))
    except DistillError:
        return False
