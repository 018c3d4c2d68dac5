"""The ``distill`` command line: the compiler's driver.

Commands stay thin; the work lives in the compiler modules. Every error a user can cause is a
``DistillError``, turned into text and an exit code in ``reported`` alone; ``DISTILL_DEBUG=1``
shows the traceback instead. Typer itself reports usage errors (exit 2).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import typer

from distill.compiler import console
from distill.compiler.errors import DistillError, ExitCode, SpecError, UsageError

app = typer.Typer(
    name="distill",
    help="Compile a Distillfile into a distilled, deployable model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DistillfileArg = Annotated[Path, typer.Argument(
    help="Path to a Distillfile, or to a folder holding one named Distillfile.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of text.")]
OfflineOption = Annotated[bool, typer.Option(
    "--offline", help="Never contact the hub: resolve models from the local cache only.")]

Params = ParamSpec("Params")


def reported(command: Callable[Params, None]) -> Callable[Params, None]:
    """Turn errors raised by ``command`` into messages and exit codes, in this one place; with
    ``--json``, also into the command's JSON shape with ``ok: false`` on stdout."""

    @functools.wraps(command)
    def run(*args: Params.args, **kwargs: Params.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except typer.Exit:
            raise  # the command chose its exit code (130 after Ctrl-C) and said why
        except DistillError as error:
            console.print_error(error)
            if kwargs.get("json_output"):
                _print_json(_failed(command.__name__, error, kwargs.get("file")))
            raise typer.Exit(int(error.exit_code)) from None
        except Exception as error:  # the one place that turns crashes into text
            if os.environ.get("DISTILL_DEBUG") == "1":
                raise
            internal = DistillError(f"internal error: {type(error).__name__}: {error}",
                                    hint="this is a bug in distill; rerun with DISTILL_DEBUG=1 for the traceback")
            internal.exit_code = ExitCode.INTERNAL
            console.print_error(internal)
            if kwargs.get("json_output"):
                _print_json(_failed(command.__name__, internal, kwargs.get("file")))
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    return run


# Every --json output: {"format": "distill.<command>/<JSON_VERSION>", "ok", "error", then the
# command's own keys, all of them present whether it succeeded or not (null when it did not get
# that far)}. JSON_VERSION changes when a key is removed or changes meaning; new keys keep it.
# docs/json.md documents each shape; tests/compiler/test_cli_json.py holds them to it.
JSON_VERSION = 1
JSON_KEYS = {"validate": ("valid", "file", "spec_hash", "diagnostics", "spec"),
             "plan": ("file", "spec_hash", "lock", "diagnostics", "plan"),
             "inspect": ("artifact", "facts")}


def _json_shape(command: str, **fields: Any) -> dict[str, Any]:
    unknown = set(fields) - set(JSON_KEYS[command])
    assert not unknown, f"{command} --json has no keys {unknown}: add them to JSON_KEYS and docs/json.md"
    return {"format": f"distill.{command}/{JSON_VERSION}", "ok": True, "error": None,
            **dict.fromkeys(JSON_KEYS[command]), **fields}


def _failed(command: str, error: DistillError, file: object) -> dict[str, Any]:
    diagnostics = [asdict(d) for d in error.diagnostics] if isinstance(error, SpecError) else []
    fields: dict[str, Any] = {"diagnostics": diagnostics} if "diagnostics" in JSON_KEYS[command] else {}
    if file is not None and "file" in JSON_KEYS[command]:
        fields["file"] = str(file)
    if "valid" in JSON_KEYS[command]:
        fields["valid"] = False
    return {**_json_shape(command, **fields), "ok": False,
            "error": {"message": error.message, "hint": error.hint, "exit_code": int(error.exit_code),
                      "diagnostics": diagnostics}}


def _version(value: bool) -> None:
    if value:
        console.stdout().print(f"distill {metadata.version('distill')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Compile a Distillfile into a distilled, deployable model."""


@app.command()
@reported
def validate(file: DistillfileArg, json_output: JsonOption = False) -> None:
    """Check a Distillfile: YAML, schema and meaning. Exit 0 valid, 1 invalid, 2 usage error."""
    from distill.compiler.codec import to_data
    from distill.compiler.frontend import compile_file

    compiled = compile_file(file)
    console.print_diagnostics(compiled.warnings)
    if json_output:
        _print_json(_json_shape("validate", valid=True, file=str(compiled.path), spec_hash=compiled.hash,
                                diagnostics=[asdict(d) for d in compiled.warnings], spec=to_data(compiled.spec)))
    else:
        console.stdout().print(f"{compiled.path}: valid (spec sha256 {compiled.hash[:12]})")


def _print_json(report: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


@app.command()
@reported
def plan(
    file: DistillfileArg,
    json_output: JsonOption = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 5 when Distillfile.lock is missing or stale.")] = False,
    offline: OfflineOption = False,
) -> None:
    """Resolve models, predict peak memory, fit the budget and write Distillfile.lock."""
    from distill.compiler.codec import to_data
    from distill.compiler.lock import build_lock, check_lock, lock_path, write_lock
    from distill.compiler.pipeline import plan_file

    planned = plan_file(file, offline=offline)
    console.print_diagnostics(planned.compiled.warnings)
    lock = build_lock(planned.compiled.hash, planned.models, planned.volume, planned.plan)
    path = lock_path(planned.compiled.path)
    if check:
        check_lock(path, lock)
    else:
        write_lock(path, lock)
    if json_output:
        _print_json(_json_shape("plan", file=str(planned.compiled.path), spec_hash=planned.compiled.hash,
                                lock=str(path), diagnostics=[asdict(d) for d in planned.compiled.warnings],
                                plan=to_data(planned.plan)))
        return
    from distill.compiler.report import past_peaks, print_plan

    print_plan(console.stdout(), planned.plan, f"distill plan {planned.compiled.path}")
    for line in past_peaks(planned.compiled.root / "dist" / planned.compiled.spec.name / "report.json"):
        console.stdout().print(line, markup=False, highlight=False)
    console.stdout().print(f"{path} is up to date" if check else f"wrote {path}")


@app.command()
@reported
def extract(
    file: DistillfileArg,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for pages.jsonl, examples.jsonl, chunks.jsonl and report.json "
        "(default: .distill/extract beside the Distillfile).")] = None,
    offline: OfflineOption = False,
) -> None:
    """Run the extract and chunk stages alone: report pages, OCR'd pages, chunks and every skip."""
    from distill.compiler.pipeline import compile_and_resolve
    from distill.runtime.sources.run import extract_and_chunk

    compiled, models = compile_and_resolve(file, offline)
    console.print_diagnostics(compiled.warnings)
    folder = out or compiled.root / ".distill" / "extract"
    extracted = extract_and_chunk(compiled, models["student"], folder)
    report, tokenizer = extracted.corpus.report, extracted.tokenizer
    console.stdout().print(
        f"{report.files} file(s): {report.pages} pages ({report.ocr_pages} OCR'd), "
        f"{report.characters:,} characters, {report.examples} QA examples "
        f"({report.repaired_answers} answer starts repaired), {report.chunks} chunks "
        f"counted with {tokenizer}; {len(report.skipped)} skipped")
    for skipped in report.skipped:
        where = f" page {skipped.page}" if skipped.page else f" {skipped.location}" if skipped.location else ""
        console.stdout().print(f"  skipped {skipped.source}{where}: {skipped.reason}")
    for removed in report.furniture:
        console.stdout().print(f"  {removed.source}: {removed.lines} header/footer lines removed "
                               f"({removed.characters:,} characters, {removed.share:.1%})")
    for warning in report.warnings:
        console.stdout().print(f"  warning: {warning}")
    console.stdout().print(f"wrote {folder}")


@app.command()
@reported
def synthesize(
    file: DistillfileArg,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for train/val/test.jsonl, rejected.jsonl and the data card "
        "(default: .distill/synthesize beside the Distillfile).")] = None,
    offline: OfflineOption = False,
) -> None:
    """Run extract, chunk and synthesize: the teacher writes grounded examples; every rejection is kept.

    Resumable: re-running after a crash asks the teacher only for chunks it had not finished.
    """
    console.quiet_libraries()
    from distill.compiler.pipeline import plan_file
    from distill.runtime.sources.run import extract_and_chunk
    from distill.runtime.synthesis.run import synthesize_planned

    planned = plan_file(file, offline=offline)
    console.print_diagnostics(planned.compiled.warnings)
    root = planned.compiled.root
    folder = out or root / ".distill" / "synthesize"
    extracted = extract_and_chunk(planned.compiled, planned.models["student"], root / ".distill" / "extract")
    with console.progress_bars() as bars:
        card = synthesize_planned(planned, extracted, folder, bars)
    examples, rejected = card.examples, card.rejected
    console.stdout().print(
        f"{examples['train']} train, {examples['val']} val, {examples['test']} test examples from "
        f"{card.inputs.chunks} chunks and {card.inputs.dataset_examples} dataset examples; "
        f"{rejected.total} rejected ({', '.join(f'{k} {v}' for k, v in rejected.by_stage.items()) or 'none'})")
    teacher_yield = card.generation.teacher_yield
    if teacher_yield:
        console.stdout().print(f"teacher yield: {teacher_yield.accepted} of {teacher_yield.requested} requested "
                               f"items ({teacher_yield.ratio:.0%})", markup=False)
    for warning in card.generation.warnings:
        console.stderr().print(console.message_text("", "warning", warning, None))
    console.stdout().print(f"wrote {folder} (data card: {folder / 'DATA_CARD.md'})")


@app.command()
@reported
def build(
    file: DistillfileArg,
    offline: OfflineOption = False,
    locked: Annotated[bool, typer.Option(
        "--locked", help="Refuse to build when Distillfile.lock is missing or stale (exit 5).")] = False,
    from_stage: Annotated[str | None, typer.Option(
        "--from", help="Run this stage and every stage after it again, even if cached.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run every stage again.")] = False,
) -> None:
    """Run the whole build: extract, synthesize, train, export, evaluate, report into dist/<name>/.

    Finished stages are cached under .distill/ by the hash of their inputs; an interrupted build
    resumes at the stage it stopped in. Failed quality gates exit 4 after the report is written.
    """
    console.quiet_libraries()
    from distill.runtime.build.run import BuildOptions, Watch, build_file
    from distill.runtime.build.watch import BuildWatcher
    from distill.runtime.evaluate import enforce_gates

    with console.progress_bars() as bars:
        watcher = BuildWatcher(console.stderr(), bars)
        try:
            built = build_file(file, BuildOptions(offline, locked, from_stage, force),
                               Watch(watcher.starting, watcher.finished, bars))
        except KeyboardInterrupt:
            bars.clear()
            console.stderr().print(watcher.interrupted(file), markup=False)
            raise typer.Exit(130) from None
    console.print_diagnostics(built.planned.compiled.warnings)
    out = console.stdout()
    for gate in built.report.gates:
        out.print(f"  {'ok  ' if gate.passed else 'FAIL'} {gate.message}", markup=False)
    watcher.print_summary(out, built.dist, built.report)
    enforce_gates(built.report.gates)


@app.command()
@reported
def clean(
    file: DistillfileArg,
    keep_last: Annotated[int, typer.Option(
        "--keep-last", min=0, help="Also keep the N most recently finished outputs of each stage.")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    offline: OfflineOption = False,
) -> None:
    """Remove cached stage outputs under .distill/ that neither the Distillfile's plan nor a
    published build (dist/*/build.json) uses; interrupted stages are kept for a build to resume."""
    from distill.compiler.lock import build_lock
    from distill.compiler.pipeline import plan_file
    from distill.compiler.units import format_size
    from distill.runtime.build.clean import clean_state
    from distill.runtime.build.graph import planned_keys
    from distill.runtime.build.run import STATE, all_stages

    planned = plan_file(file, offline=offline)
    root = planned.compiled.root
    lock = build_lock(planned.compiled.hash, planned.models, planned.volume, planned.plan)
    current = planned_keys(all_stages(planned, lock, None, offline))
    done = clean_state(root / STATE, root / "dist", current, keep_last, dry_run)
    out = console.stdout()
    verb = "would remove" if dry_run else "removed"
    out.print(f"{verb} {len(done.removed)} stage output(s), freeing {format_size(done.freed)}; "
              f"kept {done.kept} in use" + (f" or among the {keep_last} newest per stage" if keep_last else ""),
              markup=False)
    for folder in done.removed:
        out.print(f"  {verb} {folder.relative_to(root)}", markup=False)
    for folder in done.unfinished:
        out.print(f"  kept {folder.relative_to(root)}: unfinished (a build of the plan that made it resumes "
                  "there; remove it by hand if you will not go back)", markup=False)


@app.command()
@reported
def export(
    model_dir: Annotated[Path, typer.Argument(help="A saved Hugging Face model folder (safetensors).",
                                              show_default=False)],
    to: Annotated[str, typer.Option("--to", help="Target as KIND[:QUANT], e.g. onnx or onnx:int8.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Destination folder (default: dist/<model folder>-<kind>-<quant>).")] = None,
) -> None:
    """Export a model folder to a deployment format and verify it against the source model."""
    console.quiet_libraries()
    from distill.backends.export import export_verified, parse_target

    artifact, checks = export_verified(model_dir, parse_target(to), out)
    for check in checks:
        console.stdout().print(f"  {'ok  ' if check.passed else 'FAIL'} {check.name}: {check.detail}")
    ollama = (artifact.extra or {}).get("ollama") or {}
    if ollama.get("warning"):
        console.stderr().print(console.message_text("", "warning", f"Ollama: {ollama['warning']}", None))
    console.stdout().print(f"wrote {artifact.path} ({artifact.size:,} bytes, sha256 {artifact.sha256[:12]})")


@app.command()
@reported
def inspect(
    artifact: Annotated[Path, typer.Argument(
        help="An export folder, a model file in one, or a bare .gguf or .onnx file.", show_default=False)],
    json_output: JsonOption = False,
) -> None:
    """Show what an artifact is: files, sizes, hashes, quantization and its verification."""
    from distill.backends.inspect import describe, print_facts

    facts = describe(artifact)
    if json_output:
        _print_json(_json_shape("inspect", artifact=str(artifact), facts=facts))
        return
    print_facts(console.stdout(), facts)


@app.command()
@reported
def schema() -> None:
    """Print the Distillfile JSON Schema (2020-12), for editors and other tools."""
    from distill.compiler.schema import load_schema

    _print_json(load_schema())


@app.command()
@reported
def init(
    from_pdf: Annotated[Path | None, typer.Option(
        "--from-pdf", help="Start from this PDF; otherwise the folder's .pdf/.md/.txt files.")] = None,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Where to write the Distillfile.")] = Path("Distillfile"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter Distillfile (and the schema beside it) that validates."""
    from distill.compiler.fsutil import write_atomic
    from distill.compiler.schema import SCHEMA_FILE, load_schema
    from distill.compiler.starter import check_starter, starter_text

    if output.exists() and not force:
        raise UsageError(f"{output} already exists", hint="pass --force to overwrite it")
    text = starter_text(output.parent, from_pdf)
    check_starter(text, output)
    write_atomic(output.parent / SCHEMA_FILE, json.dumps(load_schema(), indent=2) + "\n")
    write_atomic(output, text)
    console.stdout().print(f"wrote {output}; next: distill validate {output}")


@app.command()
@reported
def chat(
    artifact: Annotated[Path, typer.Argument(help="An export folder (with manifest.json) or a .gguf file.",
                                             show_default=False)],
    quant: Annotated[str | None, typer.Option(
        "--quant", help="Which GGUF file of the folder (default: the first quant its manifest lists).")] = None,
    system: Annotated[str | None, typer.Option("--system", help="A system message opening the chat.")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens per reply at most.")] = 256,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0 decodes greedily.")] = 0.0,
    once: Annotated[str | None, typer.Option("--once", help="Answer this one message and exit.")] = None,
) -> None:
    """Chat with an exported model (GGUF via llama.cpp, ONNX via onnxruntime), history kept.

    Reads one message per line from stdin until EOF or /exit; the model's own chat template renders it.
    """
    console.quiet_libraries()
    from distill.runtime.chat import Settings, converse, open_session

    session = open_session(artifact, quant, Settings(max_new_tokens, temperature))
    interactive = once is None and sys.stdin.isatty()
    if interactive:
        sys.stdout.write("> ")
        sys.stdout.flush()
    converse(session, [once] if once is not None else sys.stdin, sys.stdout, system, prompt=interactive)


@app.command("launch-cmd")
@reported
def launch_cmd(file: DistillfileArg, offline: OfflineOption = False) -> None:
    """Print the multi-process training command of the plan (one shell line), for schedulers."""
    from distill.compiler.launch import shell_line, with_distillfile
    from distill.compiler.pipeline import plan_file

    planned = plan_file(file, offline=offline)
    if planned.plan.launch is None:
        raise UsageError("the plan runs one process: nothing to launch",
                         hint="set hardware.gpus and/or hardware.nodes, or run `distill build`")
    sys.stdout.write(shell_line(with_distillfile(planned.plan.launch, str(planned.compiled.path))) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``distill`` script; returns the process exit code."""
    try:
        app(args=argv, prog_name="distill")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
