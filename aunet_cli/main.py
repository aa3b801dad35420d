"""The `aunet` command line: thin Typer commands over plain functions."""

import errno
import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from splitters import SplitterError

from . import __version__
from .consoles import err, escape, out
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OUTPUT_WRITE, AunetError
from .splitter_cmd import app as splitter_app

app = typer.Typer(
    name="aunet",
    help="Byte-level hierarchical language models (Autoregressive U-Net): prepare, train, "
    "generate, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(splitter_app, name="splitter")
tokenizer_app = typer.Typer(
    help="The BPE baseline's tokenizer (sentencepiece).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(tokenizer_app, name="tokenizer")


def _complete_splitter(incomplete: str) -> list[str]:
    """Shell completion of -s: the installed splitters' names."""
    from splitters import names

    return [n for n in names() if n.startswith(incomplete)]


def _choices(*values: str):
    """Shell completion of an option with fixed values."""
    return lambda incomplete: [v for v in values if v.startswith(incomplete)]


SplitterOpt = Annotated[
    list[str],
    typer.Option(
        "--splitter",
        "-s",
        help="Pooling stage NAME[:KEY=VALUE,...]; repeat for deeper stages, e.g. "
        "-s regex-words -s regex-word-pairs -s regex-4words (see `aunet splitters`).",
        autocompletion=_complete_splitter,
    ),
]


RunDirOpt = Annotated[
    Path | None, typer.Option(help="Run directory (default: runs/<recipe name>).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe value: key.path=value (repeatable)."),
]


def _version(value: bool) -> None:
    if value:
        out().print(f"aunet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """aunet: tokenizer-free language modelling on raw bytes."""


@app.command("splitters")
def splitters_cmd(
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List installed splitters (built-in and third-party plugins)."""
    from splitters import load, names

    if fmt not in ("table", "json"):
        raise AunetError(f"--format must be table or json, got {fmt!r}")

    rows = []
    for name in names():
        try:
            cls = load(name)
            options = {
                o.name: {"default": o.default, "choices": list(o.choices or []), "help": o.help}
                for o in cls.options
            }
            row = {
                "name": name,
                "version": cls.version,
                "causal": cls().causal,
                "options": options,
                "description": cls.description,
            }
        except Exception as exc:  # one broken plugin must not hide the others
            row = {
                "name": name,
                "version": "?",
                "causal": None,
                "options": {},
                "description": f"failed to load: {exc}",
            }
        rows.append(row)
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="Splitters (entry-point group aunet.splitters)")
    for col in ("name", "version", "causal", "options (default)", "description"):
        table.add_column(col)
    for r in rows:
        opts = ", ".join(
            f"{k}={o['default']}" + (f" ({'|'.join(o['choices'])})" if o["choices"] else "")
            for k, o in r["options"].items()
        )
        causal = {True: "yes", False: "no", None: "?"}[r["causal"]]
        table.add_row(r["name"], r["version"], causal, opts, escape(r["description"]))
    out().print(table)


@app.command("split")
def split_cmd(
    files: Annotated[
        list[Path] | None, typer.Argument(help="JSON-lines files (default: standard input).")
    ] = None,
    splitter: SplitterOpt = None,  # type: ignore[assignment]
    text: Annotated[str | None, typer.Option("--text", "-t", help="Split this text.")] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help='human (coloured units) or jsonl: reads {"text": ...} lines, writes '
            '{"levels": "0102..."} (one digit per UTF-8 byte).',
        ),
    ] = "human",
) -> None:
    """Show how text is cut into units at each pooling stage."""
    from .split_view import render, split_jsonl

    specs = splitter or ["regex-words"]
    if fmt == "jsonl":
        split_jsonl(specs, files or [], sys.stdin, sys.stdout)
    elif fmt == "human":
        if text is None:
            if files:
                raise AunetError("--format human takes --text TEXT (files are for --format jsonl)")
            text = sys.stdin.read()
        render(out(), specs, text.encode("utf-8", "surrogateescape"))
    else:
        raise AunetError(f"--format must be human or jsonl, got {fmt!r}")


@app.command("prep")
def prep_cmd(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Files (.txt, .jsonl[.gz|.zst], .zst, .parquet), directories, - for stdin, "
            "or @pydoc-topics (text every Python ships)."
        ),
    ],
    splitter: SplitterOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    doc_per: Annotated[
        str,
        typer.Option(
            help="Documents in .txt inputs: file, paragraph or line.",
            autocompletion=_choices("file", "paragraph", "line"),
        ),
    ] = "paragraph",
    field: Annotated[str, typer.Option(help="JSON field / Parquet column with the text.")] = "text",
    input_format: Annotated[
        str, typer.Option(help="auto (from the file name), txt, jsonl or parquet.")
    ] = "auto",
    include: Annotated[
        list[str] | None,
        typer.Option(help="Glob of files to take from directories (`.git/*` for hidden ones)."),
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Glob of files to leave out.")] = None,
    val_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of documents for validation (by id).")
    ] = 0.01,
    shard_size: Annotated[str, typer.Option(help="Raw text bytes per shard, e.g. 32MB.")] = "32MB",
    max_doc_bytes: Annotated[
        str, typer.Option(help="Cut --doc-per file documents above this size at a line end.")
    ] = "64MB",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Workers that split, compress and write chunks: threads for the regex "
            "stages, processes for other splitters (default: all cores).",
        ),
    ] = None,
    readers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Input files read at once, each by its own thread (default: one per "
            "4 workers, at most one per input).",
        ),
    ] = None,
    num_shards: Annotated[
        int, typer.Option(min=1, help="Split the job across K machines (job arrays).")
    ] = 1,
    shard_index: Annotated[int, typer.Option(min=0, help="This machine's index, 0..K-1.")] = 0,
    on_error: Annotated[
        str, typer.Option(help="Bad records (invalid JSON, missing field): fail or skip.")
    ] = "fail",
    overwrite: Annotated[
        bool,
        typer.Option(help="Delete the output directory first (only one made by aunet prep)."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
) -> None:
    """Split raw text into Arrow shards with pooling points (resumable, parallel)."""
    from .prep import PrepOptions, default_workers, prep
    from .readers import ReadOptions, discover

    if doc_per not in ("file", "paragraph", "line"):
        raise AunetError(f"--doc-per must be file, paragraph or line, got {doc_per!r}")
    if on_error not in ("fail", "skip"):
        raise AunetError(f"--on-error must be fail or skip, got {on_error!r}")
    if input_format not in ("auto", "txt", "jsonl", "parquet"):
        raise AunetError(
            f"--input-format must be auto, txt, jsonl or parquet, got {input_format!r}"
        )
    if math.isnan(val_fraction):
        raise AunetError("--val-fraction must be a number from 0 to 1, got nan")
    if shard_index >= num_shards:
        raise AunetError(
            f"--shard-index must be below --num-shards ({num_shards}), got {shard_index}"
        )
    read = ReadOptions(doc_per, field, input_format, parse_size(max_doc_bytes, "--max-doc-bytes"))
    opts = PrepOptions(
        splitters=tuple(splitter),
        read=read,
        val_fraction=val_fraction,
        shard_bytes=parse_size(shard_size, "--shard-size"),
        on_error=on_error,
        workers=workers or default_workers(),
        readers=readers or 0,
        num_shards=num_shards,
        shard_index=shard_index,
    )
    files = discover(inputs, include or [], exclude or [], input_format, out_dir)
    t0 = time.perf_counter()
    try:
        if quiet:  # no rich at all: a scripted prep skips its import
            prep(files, out_dir, opts, None, overwrite)
            return
        from .progress import RichProgress

        manifest = prep(files, out_dir, opts, RichProgress(err()), overwrite)
    except KeyboardInterrupt:
        if not any(f.streamed for f in files):
            raise
        raise AunetError(  # what was read from it is gone: no resuming
            "interrupted; standard input or a pipe cannot be read again to resume: rerun "
            "with --overwrite",
            exit_code=EXIT_INTERRUPTED,
        ) from None
    from .summary import print_prep_summary

    if manifest.get("up_to_date"):
        err().print(f"{out_dir}: already complete for these inputs; nothing to do.")
    elif not manifest.get("complete", True):
        err().print(f"{out_dir}: this job's part is done; manifest.json appears when all are.")
    else:
        print_prep_summary(out(), manifest, time.perf_counter() - t0)


@app.command("inspect")
def inspect_cmd(
    directory: Annotated[Path, typer.Argument(help="Output directory of `aunet prep`.")],
    docs: Annotated[int, typer.Option(min=0, help="Documents to show with their boundaries.")] = 3,
    split: Annotated[str, typer.Option(help="train or val")] = "train",
) -> None:
    """Summarise prepared shards: counts, unit lengths per stage, example documents."""
    from .inspect_view import inspect

    if split not in ("train", "val"):
        raise AunetError(f"--split must be train or val, got {split!r}")

    inspect(out(), directory, docs, split)


@app.command("train")
def train_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    run_dir: RunDirOpt = None,
    set_: SetOpt = None,
    fresh: Annotated[bool, typer.Option(help="Start over instead of resuming.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train (or resume) an AU-Net from a recipe; exports model.safetensors at the end."""
    from .recipe import load_recipe

    rec = load_recipe(recipe, set_ or [])  # before importing Lightning: typos report fast
    from .train import run_training

    run = run_dir or Path("runs") / (rec.name or recipe.stem)
    result = run_training(rec, run, fresh=fresh, quiet=quiet)
    if not quiet:
        val = result.get("val_bpb")
        err().print(
            f"done: {result['steps']} steps"
            + (f", val_bpb {val:.4f}" if val is not None else "")
            + f"; model in {run}/model.safetensors"
        )
    if rec.sample.max_bytes and rec.sample.prompt:
        _print_sample(run, rec.sample.prompt, rec.sample.max_bytes, rec.sample.temperature)


@tokenizer_app.command("train")
def tokenizer_train_cmd(
    recipe: Annotated[Path, typer.Argument(help="A BPE recipe (with a tokenizer section).")],
    run_dir: RunDirOpt = None,
    set_: SetOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write it (default: RUN/tokenizer, used by train)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Less output.")] = False,
) -> None:
    """Train the recipe's sentencepiece BPE on its training split (RUN/tokenizer/).

    `aunet train` does this on first use; run it alone to inspect the tokenizer first."""
    from .recipe import load_recipe

    rec = load_recipe(recipe, set_ or [])
    if rec.tokenizer is None:
        raise AunetError(f"{recipe}: no tokenizer section (a byte-level recipe needs none)")
    from .tokenizer import bytes_per_token
    from .train import prepared_dir, split_texts, train_tokenizer

    run = run_dir or Path("runs") / (rec.name or recipe.stem)
    run.mkdir(parents=True, exist_ok=True)
    prep_dir = prepared_dir(rec, run)
    if rec.tokenizer.path and out_dir is None:
        raise AunetError(
            f"{recipe}: tokenizer.path names an existing tokenizer ({rec.tokenizer.path}); "
            "give --out to train another one elsewhere"
        )
    where = out_dir or run / "tokenizer"
    t0 = time.perf_counter()
    codec = train_tokenizer(rec, prep_dir, where, quiet)
    docs = list(split_texts(prep_dir, "val"))
    rate = f"; {bytes_per_token(codec, docs):.3f} bytes per token on the val split" if docs else ""
    err().print(
        f"wrote {where}/tokenizer.model ({codec.vocab_size} pieces) in "
        f"{time.perf_counter() - t0:.1f} s{rate}"
    )


@app.command("plot")
def plot_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run directories of `aunet train`.")],
    out_png: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Image to write (.png, .pdf, .svg, ...: the name sets the format)."
        ),
    ] = Path("bpb.png"),
) -> None:
    """Plot train/val bits per byte against steps and training FLOPs (one PNG)."""
    from .plot import plot_runs

    path = plot_runs(runs, out_png)
    err().print(f"wrote {path}")


@app.command("generate")
def generate_cmd(
    prompts: Annotated[
        list[str] | None,
        typer.Argument(help="Prompt(s); - reads standard input; none = unconditional."),
    ] = None,
    run: Annotated[Path | None, typer.Option(help="Run directory of `aunet train`.")] = None,
    model: Annotated[
        Path | None, typer.Option(help="model.safetensors (config.json beside it).")
    ] = None,
    prompt_file: Annotated[Path | None, typer.Option(help="Read the prompt from a file.")] = None,
    max_bytes: Annotated[int, typer.Option(help="Most bytes to generate per sample.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.")] = 0.8,
    top_k: Annotated[int | None, typer.Option(help="Sample among the k likeliest bytes.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass (0, 1].")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same output.")] = 0,
    num_samples: Annotated[int, typer.Option(help="Samples per prompt (batched).")] = 1,
    stop: Annotated[
        list[str] | None, typer.Option(help="Stop when this string is generated (repeatable).")
    ] = None,
    ignore_eos: Annotated[
        bool, typer.Option(help="Never end a sample at end-of-text (fixed lengths).")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="text or jsonl")] = "text",
    raw: Annotated[
        bool, typer.Option(help="Write raw bytes (no U+FFFD); accept a non-UTF-8 prompt.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Recompute the full forward pass every byte.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "cpu",
) -> None:
    """Sample text from a trained model, streamed as it is generated.

    Each byte steps only the stages it reaches (per-stage KV caches); the run's
    splitters cut the growing text online. With several samples or prompts they
    run as one batch and are printed when done.
    """
    from .generate import SampleOptions
    from .generate_cli import read_prompts, run_generate

    texts = read_prompts(prompts or [], prompt_file, raw, sys.stdin.buffer)
    opts = SampleOptions(
        max_bytes=max_bytes,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop=tuple(s.encode("utf-8", "surrogateescape") for s in stop or []),
        ignore_eos=ignore_eos,
    )
    run_generate(err(), run, model, texts, opts, num_samples, fmt, raw, not no_cache, device)


@app.command("eval")
def eval_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory (or its model.safetensors).")],
    data: Annotated[
        list[Path],
        typer.Option(help="Prepared directories (`aunet prep`) or raw text files; repeatable."),
    ],
    split: Annotated[str, typer.Option(help="Split of prepared directories: val or train.")] = (
        "val"
    ),
    doc_per: Annotated[
        str, typer.Option(help="Documents in raw .txt files: file, paragraph or line.")
    ] = "paragraph",
    stride: Annotated[
        int | None,
        typer.Option(help="Window step for long documents (default seq_len/2).", min=1),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per forward pass.")] = 8,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "cpu",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    task: Annotated[
        str,
        typer.Option(
            help="bpb (bits per byte) or spelling (correct vs misspelled held-out words)."
        ),
    ] = "bpb",
    probes: Annotated[int, typer.Option(help="--task spelling: words to probe.")] = 500,
    seed: Annotated[int, typer.Option(help="--task spelling: which words (seeded).")] = 0,
) -> None:
    """Bits per byte of a trained model on text (every real byte scored once), or the
    spelling probe (`--task spelling`)."""
    from .generate_cli import run_eval

    run_eval(
        out(), err(), run, data, split, doc_per, stride, batch_size, fmt, device, quiet, task,
        probes, seed,
    )  # fmt: skip


@app.command("compare")
def compare_cmd(
    recipes: Annotated[
        list[Path],
        typer.Argument(help="A compare recipe (recipes/compare/*.yaml), or training recipes."),
    ],
    budget: Annotated[
        float | None,
        typer.Option(help="Training FLOPs per model (overrides the compare recipe's budget)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: runs/compare/<name>)."),
    ] = None,
    probes: Annotated[
        int | None, typer.Option(help="Spelling-probe words (0: skip the probe).")
    ] = None,
    device: Annotated[str, typer.Option(help="Evaluate on auto, cpu or cuda[:N].")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train every model for the same training FLOPs, evaluate all on the same validation
    bytes and spelling probes; write compare.md, compare.json and compare.png.

    Finished runs in the output directory are reused, unfinished ones resume."""
    from .compare import EvalSection, is_compare_file, load_compare, run_compare

    if not recipes:
        raise AunetError("give a compare recipe or at least one training recipe")
    for p in recipes:
        if not p.is_file():
            raise AunetError(f"{p}: no such recipe file")
    if len(recipes) == 1 and is_compare_file(recipes[0]):
        cfg, paths = load_compare(recipes[0])
        name, ev = cfg.name or recipes[0].stem, cfg.eval
        flops = budget if budget is not None else cfg.budget
    else:
        if budget is None:
            raise AunetError("--budget FLOPS is needed when comparing training recipes")
        paths, name, ev, flops = recipes, "", EvalSection(), budget
    if not (math.isfinite(flops) and flops > 0):
        raise AunetError(f"--budget must be positive FLOPs, got {flops}")
    if probes is not None:
        if probes < 0:
            raise AunetError(f"--probes must be >= 0, got {probes}")
        ev.spelling_probes = probes
    out_path = out_dir or Path("runs") / "compare" / (name or "compare")
    from .generate_cli import resolve_device

    report = run_compare(paths, flops, out_path, ev, name, quiet, err(), resolve_device(device))
    from .compare import render_markdown

    out().print(render_markdown(report).split("\n\n- val bpb")[0], markup=False)
    err().print(f"wrote {out_path}/compare.md, compare.json, compare.png")


def _print_sample(run: Path, prompt: str, max_bytes: int, temperature: float) -> None:
    from .generate import sample_text

    text = sample_text(run, prompt, max_bytes, temperature)
    out().print(f"[bold]sample[/bold] ({prompt!r} ->)\n{escape(text)}")


_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
}


def parse_size(text: str, option: str) -> int:
    """'32MB' -> 32000000; clear message on nonsense."""
    s = text.strip().upper().replace(" ", "")
    num = s.rstrip("KMGIB")
    unit = s[len(num) :]
    try:
        value = int(float(num) * _UNITS[unit])
    except (ValueError, KeyError):
        raise AunetError(f"{option}: expected a size like 32MB or 1GiB, got {text!r}") from None
    if value <= 0:
        raise AunetError(f"{option}: must be positive, got {text!r}")
    return value


def run() -> None:
    """Console-script entry point: user mistakes become one line and an exit code."""
    try:
        app()
    except (AunetError, SplitterError) as exc:
        err().print(
            f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err().print("interrupted; rerun the same command to resume.")
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exc:  # Typer turns Ctrl-C into a silent 130, Lightning into 1
        if exc.code in (EXIT_INTERRUPTED, 1) and _after_ctrl_c(exc):
            err().print("interrupted; rerun the same command to resume.")
            sys.exit(EXIT_INTERRUPTED)
        raise
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:  # e.g. standard output on a full disk
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        where = exc.filename or "the output"
        err().print(f"[bold red]error:[/bold red] cannot write {where}: {exc.strerror}")
        sys.exit(EXIT_OUTPUT_WRITE)
    except Exception:
        err().print_exception()
        err().print("[bold red]internal error[/bold red]: please report this with the traceback.")
        sys.exit(EXIT_INTERNAL)


def _after_ctrl_c(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt led to `exc` (through Typer's own exceptions)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


if __name__ == "__main__":
    run()
