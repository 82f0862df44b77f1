"""The `reelsense` command line: ingest, extract, align, features, train, evaluate, score, report,
explain, models, serve, sql, compact, prune, sample, demo. The synopsis of every command and flag
is README.md's "The command line" (tests/test_readme.py holds it to this parser both ways);
`reelsense COMMAND --help` describes each flag.

`--home` (env `REELSENSE_HOME`, default `./.reelsense`) holds everything a run writes. A
`ReelsenseError` is printed as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import errno
import functools
import io
import json
import logging
import os
import re
import select
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa

from flows.arguments import (
    check_arguments,
    check_keep_runs,
    check_pair,
    check_pair_runs,
    check_run,
    check_saved_version,
    check_users,
    check_version,
    explanations_need_content,
    has_content_vectors,
    ranking_inputs,
    replace_warning,
    run_held,
    unrecorded_warning,
)
from flows.console import (
    count,
    format_csv,
    format_json,
    format_table,
    name_home,
    option_names,
    prefect_console_handlers,
    rankers_toml,
    report_line,
    results_lines,
    runnable,
    settings_summary,
    settings_text,
)
from flows.runners import check_dask
from ranker.data import stale_samples
from ranker.names import ALL_MODELS, CANDIDATES, NEEDS_BASE, READS_CONTENT, REPORT_PAGES, RETRIEVALS, TOP_K, check_rankers
from warehouse import db, store
from warehouse.errors import ReelsenseError, WarehouseNotFound
from warehouse.ingest import IngestReport, ingest_events, ingest_items
from warehouse.microlens import ingest_microlens
from warehouse.schemas import EMBEDDINGS, EVENTS, ITEMS, SCORES, TABLES
from warehouse.settings import override, read_toml
from warehouse.store import Warehouse


def _device(text: str) -> str:
    """--device: auto, cpu, cuda or cuda:N (argparse prints a one-line error for anything else)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device torch can use; pass --device cpu or auto")
        if ":" in text and int(text.split(":")[1]) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return text


SEED_MAX = 2**31 - 1  # the largest seed every library reelsense seeds takes (LightGBM's is a C int)


def _seed(text: str) -> int:
    """An argparse type for a seed (probe: `--seed -1` ended in numpy's or the bootstrap's traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a seed is a whole number from 0 to {SEED_MAX}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value}: a seed is a whole number from 0 to {SEED_MAX}")
    return value


def _at_least(minimum: int, hint: str = "") -> Callable[[str], int]:
    """An argparse type for a whole number (workers, shards, --limit, --k, pages), `minimum` or more;
    `hint`: what to do instead, said with a number below it."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, {minimum} or more") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: expected {minimum} or more" + (f"; {hint}" if hint else ""))
        return value

    return parse


def _buffer_unbuffered_stdout() -> None:
    """Probe: with PYTHONUNBUFFERED, stdout's text layer writes straight to the file descriptor, and a
    pipe whose reader left mid-write took part of one large write: the rest was dropped unsaid and the
    command exited 0. A BufferedWriter underneath retries a short write until all is written or the
    pipe is gone (BrokenPipeError, exit 141). Line buffering keeps each line as prompt as unbuffered.
    stderr is left as it is: short lines (errors, progress) that a pipe takes whole."""
    if isinstance(getattr(sys.stdout, "buffer", None), io.RawIOBase):  # unbuffered: the text layer sits on the raw file
        old = sys.stdout
        old.flush()
        raw = io.FileIO(old.fileno(), "w", closefd=False)  # the descriptor stays the original's to close
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=old.encoding, errors=old.errors, line_buffering=True)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on its write end)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a captured stdout) or no poll
        return False


def _home_source(home: Path) -> str:
    """How the home was given, for its errors (probe: REELSENSE_HOME's was called --home's)."""
    if home != default_home():  # given with --home (or an abbreviation of it: review)
        return f"--home {home}"
    return f"REELSENSE_HOME={home}" if "REELSENSE_HOME" in os.environ else f"the default home {home}"


def _interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C (as KeyboardInterrupt): one line, exit 130."""
    print(_stopped_line(args, signal.SIGINT), file=sys.stderr)
    return 130


def _stopped_line(args: argparse.Namespace, signum: int) -> str:
    """The one line of a command stopped by `signum`: finished writes are kept and the same command
    completes the work; for `train --force` with a stopped fit kept, that `train` without --force
    continues it (probe: the signal handler's line said "rerun the same command", which trained
    from epoch 1 again); a query (`sql`) wrote nothing."""
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    if args.command == "sql":
        return f"reelsense: {how}"
    if args.command == "train" and getattr(args, "force", False):
        try:  # a stopped fit of a ranker it trains (review: not one of another ranker, left from before)
            names = _models(args.models) if args.models else list(ALL_MODELS)
            names += [NEEDS_BASE[name] for name in names if name in NEEDS_BASE]
            rankers = Warehouse(args.home).models_dir / "rankers"
            kept = any((rankers / name / "unfinished.pt").exists() for name in names)
        except (OSError, ReelsenseError):
            kept = False
        if kept:
            return (
                f"reelsense: {how}; the stopped fit is kept: `train` without --force continues it, or reuses the saved model "
                "when nothing it depends on changed (--force trains from epoch 1 again)"
            )
    return _generic_line(signum)


def _generic_line(signum: int) -> str:
    return INTERRUPTED if signum == signal.SIGINT else STOPPED.format(name=signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    # No telemetry from the embedded Prefect server: these machines may have no network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Without PREFECT_API_URL each flow command starts a local Prefect server; Prefect waits 20 s for
    # it, which a busy 2-core machine can exceed.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    if argv is None:  # the program; a caller of main() in its own process keeps its stdout
        _buffer_unbuffered_stdout()
    parser = build_parser()
    args = parser.parse_args(argv)
    restore: Callable[..., None] = lambda signals=True: None  # noqa: E731
    exit_if_bridged = lambda: None  # noqa: E731
    restore_quietly = False
    try:
        name_home(args.home, default_home())
        if args.command in FLOW_COMMANDS:
            from flows.console import hide_user_error_tracebacks

            hide_user_error_tracebacks()
            # As the `reelsense` program only (argv None): a caller of main() in its own process (the
            # tests, a notebook) keeps its Ctrl-C and SIGTERM. serve stops its runner on Ctrl-C, as Prefect's serve does.
            if argv is None and args.command != "serve":
                restore, exit_if_bridged = _exit_at_once_on_interrupt(lambda signum: _stopped_line(args, signum))
                restore_quietly = True
        # probe: a NotADirectoryError traceback, for a home that is a file or lies below one
        afile = next((p for p in (args.home.absolute(), *args.home.absolute().parents) if p.exists() and not p.is_dir()), None)
        given = _home_source(args.home)
        if afile == args.home.absolute():
            raise ReelsenseError(f"{given} is a file, not a folder; a home is a folder (made on first use)")
        if afile is not None:
            raise ReelsenseError(f"{given} lies below {afile}, which is a file, not a folder: choose a home whose parent folders are folders")
        try:
            status = args.run(args) or 0
            sys.stdout.flush()  # buffered output to a pipe is written here, where a reader gone is caught below
        except BaseException:
            exit_if_bridged()  # a SIGTERM went through Prefect's bridge, whatever Prefect raised after it
            raise
        exit_if_bridged()  # ... or whatever swallowed it: a SIGTERM still stops with 143
        return status
    except ReelsenseError as exc:
        print(f"reelsense: error: {runnable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args)
    except BrokenPipeError:
        # probe: `reelsense ingest ... | head -1` ended in a traceback. Where stdout's reader closed
        # the pipe, what the command did is done (or stops here, as a Unix writer does): exit as a
        # writer killed by SIGPIPE. Another broken pipe (a socket, a child process) is an error.
        if not _stdout_reader_gone():
            raise
        if argv is None:  # the program (a caller of main() keeps its stdout)
            _discard_stdout()
        return 128 + signal.SIGPIPE
    except OSError as exc:
        # probe: a full disk (`> /dev/full`), a forbidden or read-only path: tracebacks. The path (or
        # stdout), the OS's reason and what to do, in one line; other OS errors keep their traceback.
        on_stdout = not exc.filename and not _stdout_flushes()  # its unwritten rest fails again (review: not any OSError without a path)
        space = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        if exc.errno not in OS_ERRORS_OF_THE_USER or not (exc.filename or on_stdout or space):
            raise
        what = exc.filename if exc.filename else "the output (stdout)" if on_stdout else str(exc)
        reason = f": {exc.strerror}" if exc.filename or on_stdout else ""
        print(f"reelsense: error: {what}{reason}; {OS_ERRORS_OF_THE_USER[exc.errno]}", file=sys.stderr)
        if argv is None and on_stdout:
            _discard_stdout()
        return 1
    except RuntimeError as exc:
        if str(exc) == "Query interrupted":  # probe: DuckDB turns a Ctrl-C mid-query into this (a traceback, exit 1)
            return _interrupted(args)
        if not str(exc).startswith("Timed out while attempting to connect to ephemeral Prefect API server"):
            raise
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as WAIT

        detail = str(exc).split("server.", 1)[1].strip().splitlines()[0] if "exited with code" in str(exc) else ""
        why = f" (Prefect: {detail[:300]})" if detail else ""
        print(
            f"reelsense: error: the local Prefect server did not start within {WAIT.value()} s{why}, so no flow ran; "
            "rerun when the machine is less busy, wait longer (export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300), "
            "or point PREFECT_API_URL at a running server (`make serve`)",
            file=sys.stderr,
        )
        return 2
    finally:
        if restore_quietly:  # before the handlers go: no moment in which a Ctrl-C raises here (review)
            _stop_at_once_while_exiting()
        restore(signals=not restore_quietly)
        name_home(None)


INTERRUPTED = "reelsense: interrupted; finished writes are kept, rerun the same command to complete"
# What the machine refused, and what to do; other OS errors are bugs and keep their traceback.
OS_ERRORS_OF_THE_USER = {
    errno.ENOSPC: "free some space and rerun the same command (finished writes are kept)",
    errno.EDQUOT: "free some space and rerun the same command (finished writes are kept)",
    errno.EACCES: "choose a path you may write, or get permission to it",
    errno.EPERM: "choose a path you may write, or get permission to it",
    errno.EROFS: "choose a path on a writable file system",
    errno.ENOTDIR: "a folder on that path is a file: choose another path",
}


def _discard_stdout() -> None:
    """Where stdout failed (its reader gone, a full disk), the rest of it goes nowhere, so that
    Python's flush at exit does not raise again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _stdout_flushes() -> bool:
    """Whether stdout takes what it holds now (after an OS error: was stdout the one that failed?)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return False
    return True


def _exit_at_once_on_interrupt(line_of: Callable[[int], str]) -> tuple[Callable[..., None], Callable[[], None]]:
    """Ctrl-C (SIGINT) or SIGTERM during a flow command exits at once, its children stopped:
    status 130 for Ctrl-C, 143 for SIGTERM (what `kill`, systemd, `docker stop` and Kubernetes send).

    Ctrl-C reaches the whole process group, the local Prefect server too; the flow engine then
    retried its calls to the stopped server for about 3 minutes and exited 1 with pages of
    tracebacks. SIGTERM reaches this process alone, and Python's default ended it without a word,
    leaving the local Prefect server it started running. Exiting at once is as safe as a SIGKILL,
    which the crash tests deliver at every write point: every write is atomic (temp file, fsync,
    rename; replaces journaled), and the same command run again completes the work.

    With PREFECT_API_URL, Prefect's SIGTERM bridge raises TerminationSignal inside the flow so the
    run is marked Crashed on that server, then sends the signal again to `stop`. A signal that lands
    while a task run is being created is lost on the way: Prefect's crash report raises "Task run is
    not set" in its place (CI, 2026-12-02: exit 1 and a traceback). The bridge's handler is wrapped to
    note the signal, and `exit_if_bridged` (called by main when the command ends, by an exception
    or not) stops as `stop` does; until then Prefect's flow and task run logs and any traceback are
    kept off the console (what Prefect says of a run it is losing to the signal). `line_of(signum)`
    is the line printed. Returns (what restores the previous handlers, exit_if_bridged)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda signals=True: None, lambda: None
    import prefect.flow_engine
    import prefect.utilities.engine as prefect_bridge
    import psutil  # noqa: F401  # loaded here: in the handler (_exit_now) its import is a lookup that cannot fail or wait
    from prefect.settings import PREFECT_API_URL

    bridge = prefect.flow_engine.capture_sigterm
    # Private to Prefect (pinned 3.9.x), looked up by name in its module when the bridge is installed
    # and compared; were it renamed, the bridge would go unwrapped rather than the command fail.
    raise_termination = getattr(prefect_bridge, "_prefect_sigterm_handler", None)
    bridged: list[int] = []

    def note_then_raise(signum: int, *frame: object) -> NoReturn:
        bridged.append(signum)
        assert raise_termination is not None
        raise_termination(signum, *frame)

    if raise_termination is not None:
        prefect_bridge._prefect_sigterm_handler = note_then_raise  # type: ignore[attr-defined]
    quiet = _NoTracebacksOnceStopping(bridged)
    consoles = prefect_console_handlers()
    for handler in consoles:
        handler.addFilter(quiet)
    if not PREFECT_API_URL.value():
        # The local Prefect server is in this process group. While a flow runs, Prefect's own SIGTERM
        # bridge would first report the run Crashed to it, and a SIGTERM to the whole group (systemd,
        # `kill -- -PGID`) has stopped it: 77 s of retries and tracebacks, measured. With no server
        # of its own to outlive the command, that report has no reader; skip the bridge. (With
        # PREFECT_API_URL the bridge marks the run Crashed on that server, then calls `stop`.)
        prefect.flow_engine.capture_sigterm = contextlib.nullcontext  # type: ignore[assignment]
    stop = _stopper(line_of)
    previous = {signum: signal.signal(signum, stop) for signum in HANDLED}

    def restore(signals: bool = True) -> None:
        """Put back what was replaced; the signal handlers too unless `signals` is False (the
        caller has installed others)."""
        prefect.flow_engine.capture_sigterm = bridge  # type: ignore[assignment]
        if raise_termination is not None:
            prefect_bridge._prefect_sigterm_handler = raise_termination  # type: ignore[attr-defined]
        for handler in consoles:
            handler.removeFilter(quiet)
        for signum, handler in previous.items() if signals else ():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def exit_if_bridged() -> None:
        if bridged:
            stop(bridged[0], None)

    return restore, exit_if_bridged


# What the command line of Prefect's local (temporary) server holds: uvicorn serving this app.
PREFECT_SERVER_APP = "prefect.server.api.server:create_app"


def _exit_now(signum: int, line_of: Callable[[int], str]) -> NoReturn:
    """Say `line_of(signum)`, stop this process's children (the local Prefect server, Dask workers)
    and exit with 128 + signum, ignoring further signals meanwhile (a second one cannot cut this short)."""
    import psutil

    try:
        for ignored in HANDLED:
            signal.signal(ignored, signal.SIG_IGN)
        try:
            line = line_of(signum)
        except Exception:  # the handler must exit whatever happens: the generic line then
            line = _generic_line(signum)
        os.write(2, f"\n{line}\n".encode())  # not print: stderr may be mid-write (tqdm, logs)
        # Not waited for (multiprocessing's helper ignores SIGTERM and ends once we have). The local
        # Prefect server is killed (probe: sent SIGTERM while it recorded task runs, it logged 160
        # lines of tracebacks to our terminal after the line; its writes are SQLite transactions,
        # which a kill rolls back); the others get SIGTERM, so multiprocessing's resource tracker
        # still frees what it tracks.
        for child in psutil.Process().children(recursive=True):
            try:
                child.kill() if PREFECT_SERVER_APP in " ".join(child.cmdline()) else child.terminate()
            except psutil.Error:
                pass
    finally:
        os._exit(128 + signum)


def _stop_at_once_while_exiting() -> None:
    """Once a flow command has ended, Python's exit runs Prefect's shutdown of its local server (an
    atexit callback, which waits for the server): a Ctrl-C then printed Prefect's traceback
    ("Exception ignored in atexit callback", probe). From here a signal stops the children (that
    server, where the command started one) and exits at once with 128 + signum, in one line."""
    if threading.current_thread() is not threading.main_thread():
        return
    stop = _stopper(lambda signum: EXIT_INTERRUPTED.format(name="Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name))
    for signum in HANDLED:
        signal.signal(signum, stop)


def _stopper(line_of: Callable[[int], str]) -> Callable[[int, object], None]:
    """A signal handler that exits at once (`_exit_now`) with the line for its signal; a second
    signal that arrives before the first could ignore it does nothing."""
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(signum)
            _exit_now(signum, line_of)

    return stop


class _NoTracebacksOnceStopping(logging.Filter):
    """Once a SIGTERM went through Prefect's bridge, the console gets no flow or task run record and
    no record with a traceback (the run's failure or crash as Prefect reports it): the command is
    stopping, and `stop` prints the one line that says so. Until main's `exit_if_bridged`."""

    def __init__(self, bridged: list[int]) -> None:
        super().__init__()
        self.bridged = bridged

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.bridged and (record.exc_info or record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))))


HANDLED = (signal.SIGINT, signal.SIGTERM)
STOPPED = "reelsense: stopped by {name}; finished writes are kept, rerun the same command to complete"
EXIT_INTERRUPTED = "reelsense: {name} as the command exited, after it had ended (its finished writes are kept); its child processes were stopped"


DEVICE_HELP = "auto (default: a CUDA device where torch has one, else cpu), cpu, cuda or cuda:N"
# Commands that run Prefect flows: user errors raised inside them print one line, no traceback.
FLOW_COMMANDS = {"extract", "align", "features", "train", "evaluate", "score", "report", "demo", "serve"}


def default_home() -> Path:
    """The home a bare `reelsense` uses: REELSENSE_HOME, else ./.reelsense."""
    return Path(os.environ.get("REELSENSE_HOME", ".reelsense"))


def _installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("reelsense")
    except metadata.PackageNotFoundError:
        return "(not installed: `make setup` installs it)"


class _Version(argparse.Action):
    """--version, read from the installed package only when asked (not on every parser build)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object, option_string: str | None = None) -> None:
        print(f"reelsense {_installed_version()}")  # stdout, as argparse's own version action writes
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelsense", description=__doc__.split("\n\n")[0])
    parser.add_argument(  # probe: there was none
        "--version", action=_Version, nargs=0, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help="show the installed reelsense's version and exit"
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=default_home(),
        help="folder for everything a run writes (env REELSENSE_HOME; default ./.reelsense)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="validate and load data into the warehouse")
    kinds = ingest.add_subparsers(dest="kind", required=True, metavar="KIND")
    microlens = kinds.add_parser("microlens", help="MicroLens folder: *_pairs.tsv, *_titles.csv, optional videos/")
    microlens.add_argument("path", type=Path, help="the MicroLens folder")
    microlens.set_defaults(run=_ingest_microlens)
    items = kinds.add_parser("items", help="CSV or Parquet: item_id,title,video_uri[,audio_uri]")
    items.add_argument("path", type=Path, help="the items file (.csv or .parquet)")
    items.set_defaults(run=_ingest_items)
    events = kinds.add_parser("events", help="CSV or Parquet: user_id,item_id,event_ts,event[,watch_ratio]")
    events.add_argument("path", type=Path, help="the events file (.csv or .parquet)")
    events.set_defaults(run=_ingest_events)

    extract = commands.add_parser("extract", help="embed frames, titles and audio of the items (flow extract-items)")
    extract.add_argument("--config", type=Path, help="TOML file (see extractors/config.py)")
    extract.add_argument("--preset", choices=["offline", "paper"], help="override the config's preset")
    extract.add_argument("--force", action="store_true", help="recompute items that are already embedded")
    extract.add_argument("--limit", type=_at_least(1), help="embed at most N of the items that need it (by item_id), 1 or more; a rerun takes the next N")
    extract.add_argument("--dask-workers", type=_at_least(0), default=0, help="run item shards on a local Dask cluster of N processes")
    extract.add_argument(
        "--dask-address", default=os.environ.get("REELSENSE_DASK_ADDRESS"), help="run item shards on a running Dask scheduler (env REELSENSE_DASK_ADDRESS)"
    )
    extract.add_argument("--shards", type=_at_least(0), default=0, help="item shards (default: 0 in-process, 4 per Dask worker)")
    extract.set_defaults(run=_extract)

    align = commands.add_parser("align", help="align frames, text and audio in one space and fuse them (flow align-items)")
    align.add_argument("--retrain", action="store_true", help="train a new alignment model even if one fits")
    align.add_argument("--seed", type=_seed, help="seed of the alignment (default: the config's, 0)")
    align.add_argument("--config", type=Path, help="TOML file of AlignConfig settings (extractors/align.py), e.g. epochs = 100")
    align.add_argument("--topics", type=Path, help="truth.json of the sample: also report same-topic neighbours")
    align.set_defaults(run=_align)

    features = commands.add_parser("features", help="behaviour sequences and samples with DuckDB SQL (flow build-features)")
    features.set_defaults(run=_features)
    train = commands.add_parser("train", help="train the rankers (flow train-ranker)")
    train.add_argument("--models", default=",".join(ALL_MODELS), help=f"comma-separated, from {', '.join(ALL_MODELS)}")
    train.add_argument(
        "--seed",
        type=_seed,
        help="training seed (default 0; lstm-attn trained only as lightgbm's base: its latest's, and lightgbm then takes it too); "
        "a saved model of another seed is not reused",
    )
    train.add_argument("--device", default="auto", type=_device, help=DEVICE_HELP)
    train.add_argument(
        "--force",
        action="store_true",
        help="train the models named again even if a saved model fits (the same data, content, seed, settings and code); "
        "a base added for a re-ranker is reused where it fits: name it too (--models lstm-attn,lightgbm) to retrain it",
    )
    train.add_argument(
        "--config", type=Path, help="rankers TOML file: a table per ranker overriding its settings, e.g. [sasrec] patience = 3 (configs/microlens-rankers.toml)"
    )
    train.set_defaults(run=_train)
    evaluate = commands.add_parser("evaluate", help="evaluate the trained rankers (flow evaluate)")
    evaluate.add_argument(
        "--models",
        default=",".join(ALL_MODELS),
        help="comma-separated trained rankers to evaluate (default: all); the report keeps the other "
        "models' earlier results on the same data; include sasrec to get paired differences",
    )
    evaluate.add_argument("--seed", type=_seed, default=0, help="seed of the --max-users sample, the sampled CTR negatives and the bootstrap (default 0)")
    evaluate.add_argument(
        "--max-users",
        type=_at_least(1, "leave it out to evaluate every test user"),  # checked as parsed (probe: refused only after the imports)
        help="a quick evaluation on a seeded sample of test users, written to results-quick.json and not recorded in the registry (default: every test user)",
    )
    evaluate.add_argument("--device", default="auto", type=_device, help=DEVICE_HELP)
    evaluate.add_argument("--dataset", default="", help="name of the data set in the report")
    evaluate.set_defaults(run=_evaluate)

    score = commands.add_parser("score", help="top-K items for every user (flow score-batch) into `scores`")
    # No argparse choices: check_arguments names a retired ranker for what it is (probe: `--model
    # id-sequence` got argparse's bare "invalid choice", while train and evaluate explained it).
    score.add_argument("--model", default="lstm-attn", help=f"the ranker that scores, one of {', '.join(ALL_MODELS)} (default: lstm-attn)")
    score.add_argument("--version", help="a saved version of the model (default: its latest)")
    score.add_argument("--k", type=_at_least(1), default=TOP_K, help=f"items kept per user, 1 or more (default {TOP_K})")
    score.add_argument(
        "--retrieval",
        choices=RETRIEVALS,
        default=RETRIEVALS[0],
        help="model: the model's own top K of the items the user has not engaged with (default); "
        "similarity: --candidates items by embedding similarity, re-ranked by the model",
    )
    score.add_argument("--candidates", type=int, help=f"with --retrieval similarity: candidates per user (default {CANDIDATES})")
    score.add_argument("--users", help="comma-separated user ids (default: every user)")
    score.add_argument(
        "--run-id", help="rerunning with the same id and model version completes a run without duplicating rows; a run id belongs to one model version"
    )
    score.add_argument("--replace", action="store_true", help="delete the run's report, explanations and scores first (to reuse a run id with another model)")
    score.add_argument("--shards", type=_at_least(1), default=4, help="user shards (groups of events partitions), 1 or more (default: 4)")
    score.add_argument("--device", default="auto", type=_device, help=DEVICE_HELP)
    score.add_argument("--dask-workers", type=_at_least(0), default=0, help="run the shards on a local Dask cluster of N processes")
    score.add_argument(
        "--dask-address", default=os.environ.get("REELSENSE_DASK_ADDRESS"), help="run the shards on a running Dask scheduler (env REELSENSE_DASK_ADDRESS)"
    )
    score.set_defaults(run=_score)
    report = commands.add_parser("report", help="explanations, profiles, shifts, plots and the HTML report (flow analyze)")
    report.add_argument(
        "--run-id",
        help="the score-batch run to explain (default: the latest); its report goes to <home>/reports/<run>/, and <home>/reports/index.html lists them",
    )
    report.add_argument("--truth", type=Path, help="the sample's truth.json: score detected shifts against the planted ones")
    report.add_argument("--plot-users", type=_at_least(0), default=40, help="users whose pages get a figure, 0 or more (default: 40)")
    report.add_argument("--pages", type=_at_least(0), default=REPORT_PAGES, help=f"user pages, the run's most active users, 0 or more (default {REPORT_PAGES})")
    report.add_argument("--device", default="auto", type=_device, help=DEVICE_HELP)
    report.add_argument("--config", type=Path, help="TOML file of interest-shift settings (ranker/shifts.py ShiftConfig), e.g. window = 16")
    report.set_defaults(run=_report)
    explain = commands.add_parser("explain", help="why an item is ranked for a user, in words and numbers")
    explain.add_argument("--user", required=True)
    explain.add_argument("--item", required=True)
    explain.add_argument(
        "--run-id", help="read the explanation stored for this run (default: the newest run that scored the pair; computed now where it has none stored)"
    )
    explain.add_argument("--device", default="auto", type=_device, help=DEVICE_HELP)
    explain.set_defaults(run=_explain)
    serve = commands.add_parser("serve", help="serve every flow as a scheduled Prefect deployment (needs PREFECT_API_URL)")
    serve.add_argument("--name", default="default", help="deployment name: `prefect deployment run 'extract-items/<name>'`")
    serve.add_argument("--paused", action="store_true", help="register the schedules paused (runs only when triggered)")
    serve.add_argument(
        "--config",
        type=Path,
        help="rankers TOML for the scheduled train-ranker (as `train --config`), read at each run: an edit reaches the next run",
    )
    serve.add_argument("--seed", type=_seed, help="training seed of the scheduled train-ranker (default 0)")
    serve.set_defaults(run=_serve)
    models = commands.add_parser("models", help="list the trained rankers in the model registry")
    models.set_defaults(run=_list_models)

    sql = commands.add_parser(
        "sql", help="run one read-only SELECT over the warehouse (COPY, SET, CREATE, ... are refused; files are read only under <home>/tables)"
    )
    sql.add_argument("query")
    sql.add_argument(
        "--param", action="append", default=[], metavar="VALUE|NAME=VALUE", help="repeatable: values for $1, $2, ... in order, or NAME=VALUE for $NAME"
    )
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table", help="table (cells cut at --width) or csv / json (full values)")
    sql.add_argument("--max-rows", type=int, help="rows printed (default: 50 for table, all for csv and json)")
    sql.add_argument("--width", type=int, default=48, help="widest table cell in terminal columns (a wide CJK character takes two); 0: no limit")
    sql.set_defaults(run=_sql)

    compact = commands.add_parser(
        "compact", help="merge each table's small Parquet files (one per append); it waits for running reelsense readers and holds new ones until it is done"
    )
    compact.add_argument("tables", nargs="*", metavar="TABLE", help=f"tables to compact (default: all of {', '.join(TABLES)})")
    compact.set_defaults(run=_compact)

    prune = commands.add_parser(
        "prune", help="keep the N newest score runs (their scores, explanations, reports and the model versions they used); delete the rest"
    )
    prune.add_argument("--keep-runs", type=int, required=True, metavar="N", help="how many of the newest score runs to keep, 1 or more")
    prune.set_defaults(run=_prune)

    sample = commands.add_parser("sample", help="generate the bundled sample platform")
    sample.add_argument("--out", type=Path, required=True, help="the folder to write items.csv, events.csv, videos/ and truth.json to")
    sample.add_argument("--seed", type=_seed, default=7, help="the sample's seed (default: 7)")
    sample.set_defaults(run=_sample)

    demo = commands.add_parser("demo", help="run the whole pipeline on the bundled sample")
    demo.add_argument("--seed", type=_seed, default=7, help="the sample's seed (default: 7)")
    demo.set_defaults(run=_demo)
    return parser


def _compact(args: argparse.Namespace) -> None:
    unknown = [name for name in args.tables if name not in TABLES]
    if unknown:
        near = difflib.get_close_matches(unknown[0], TABLES, n=1)  # probe: `compact evnets` suggested nothing
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ReelsenseError(f"unknown table {unknown[0]!r}; {hint}pass some of {', '.join(TABLES)} (or none: every table)")
    wh = Warehouse(args.home)
    if not wh.tables_dir.exists():
        raise WarehouseNotFound(f"no warehouse in {wh.home}; run `reelsense ingest` (or `reelsense demo`) first")
    for name in dict.fromkeys(args.tables or TABLES):
        before, after = store.compact(wh, TABLES[name])
        if not before:
            print(f"compact {name}: no files")
        else:
            print(f"compact {name}: {count(before, 'file')} -> {after}" if after < before else f"compact {name}: {count(before, 'file')}, nothing to merge")


def _prune(args: argparse.Namespace) -> None:
    check_keep_runs(args.keep_runs)  # before the import (3-4 s of torch and Prefect)
    wh = _require(args.home, SCORES, "no scores in {home}; nothing to prune")
    from flows.prune import prune_runs

    out = prune_runs(wh, args.keep_runs)
    print(
        f"prune: kept {count(len(out['kept_runs']), 'run')} ({', '.join(out['kept_runs'])}); removed {count(len(out['runs']), 'run')} "
        f"({count(out['rows']['scores'], 'score')}, {count(out['rows']['explanations'], 'explanation')}, {count(out['reports'], 'report')}) and "
        f"{count(len(out['model_versions']), 'model version')} no kept run uses"
    )


def _print_reports(wh: Warehouse, reports: list[IngestReport]) -> None:
    db.refresh_views(wh)
    for report in reports:
        print(report.line())
        for line in report.reason_lines():
            print(runnable(line))
    named = sorted({item for report in reports for item in report.item_ids})  # the events files' items
    if named and wh.has_rows_on_disk(ITEMS):  # no items yet: nothing surprising
        missing = db.analysis(wh, "items_only_in_events", {"items": named}).to_pylist()[0]
        if missing["n"]:  # probe, 2026-12-03: accepted without a word, then counted by evaluate
            some = ", ".join(map(repr, missing["examples"])) + (", ..." if missing["n"] > len(missing["examples"]) else "")
            print(
                runnable(
                    f"note: these events name {missing['n']} {'item' if missing['n'] == 1 else 'items'} that `items` does not hold ({some}): "
                    "they count in the catalogue, but no ranker that reads content can recommend them until `reelsense ingest items FILE` adds "
                    "them and `reelsense extract` embeds them (then `reelsense align`, where the home's items are aligned)"
                )
            )


def _ingest_microlens(args: argparse.Namespace) -> None:
    wh = Warehouse(args.home)
    _print_reports(wh, ingest_microlens(wh, args.path))


def _ingest_items(args: argparse.Namespace) -> None:
    wh = Warehouse(args.home)
    _print_reports(wh, [ingest_items(wh, args.path)])


def _ingest_events(args: argparse.Namespace) -> None:
    wh = Warehouse(args.home)
    _print_reports(wh, [ingest_events(wh, args.path)])


def _extract(args: argparse.Namespace) -> None:
    from extractors.config import load_config

    check_dask(args.dask_workers, args.dask_address)
    config = load_config(args.config).replace(preset=args.preset)
    wh = Warehouse(args.home)
    if not wh.has_rows_on_disk(ITEMS):
        raise WarehouseNotFound(f"no items in {wh.home}; run `reelsense ingest items FILE` (or `reelsense demo`) first")
    from extractors.pipeline import check_checkpoints  # after the checks above: torch takes seconds to import
    from flows.console import extract_line
    from flows.extract import run_extract

    check_checkpoints(config)  # a missing checkpoint is one line before any flow starts, not after decoding
    summary = run_extract(
        str(wh.home), config, force=args.force, limit=args.limit, dask_workers=args.dask_workers, dask_address=args.dask_address, shards=args.shards
    )
    print(runnable(extract_line(summary)))  # probe: its failures query ran on the default home


def _check_truth(path: Path, option: str, key: str, home: Path) -> None:
    """Refuse, before any flow starts, a file that is not the sample's truth.json (`home`'s demo
    writes one in its sample folder)."""
    try:
        if not isinstance(json.loads(path.read_text())[key], dict):
            raise TypeError(f"{key!r} is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReelsenseError(
            f"{option} {path}: not a sample's truth.json ({type(exc).__name__}: {exc}); "
            f"`reelsense sample --out DIR` writes one beside its items.csv (the demo's: {home / 'sample' / 'truth.json'})"
        ) from None


def _align(args: argparse.Namespace) -> None:
    from extractors.align import AlignConfig
    from flows.align import MIN_PAIRED_ITEMS, align_items
    from flows.console import alignment_lines

    config = override(AlignConfig(), read_toml(args.config), str(args.config)) if args.config else AlignConfig()
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    wh = Warehouse(args.home)
    if not wh.has_rows_on_disk(EMBEDDINGS):
        raise WarehouseNotFound(f"no embeddings in {wh.home}; run `reelsense extract` first")
    if args.topics is not None:  # probe: a bad file was a traceback, after the alignment was written
        _check_truth(args.topics, "--topics", "items", Path(args.home))
    out = align_items(str(wh.home), retrain=args.retrain, config=config, topics_path=str(args.topics) if args.topics else None)
    if "report" not in out and "paired" in out:
        print(
            f"align-items: at most {count(out['paired'], 'item')} of the warehouse {'holds' if out['paired'] == 1 else 'hold'} the same two "
            f"of its modalities ({', '.join(out['modalities'])}), and alignment needs at least {MIN_PAIRED_ITEMS}: nothing to align until "
            "more items hold two"
        )
        return
    if "report" not in out:
        print(f"align-items: only {', '.join(out['modalities']) or 'no'} modality: nothing to align")
        return
    print(f"align-items: model aligned@{out['version']}, {out['written']} vectors written; held-out retrieval ({wh.reports_dir / 'alignment.json'}):")
    print("\n".join("  " + line for line in alignment_lines(out["report"])))


def _features(args: argparse.Namespace) -> None:
    from flows.rank import build_features

    wh = _require(args.home, EVENTS, "no events in {home}; run `reelsense ingest events FILE` first")
    summary = build_features(str(wh.home))
    print(
        f"build-features: {summary['positives']} positive interactions of {summary['users']} users with their "
        f"histories ({', '.join(f'{k} {v}' for k, v in summary['splits'].items())}) -> samples"
    )


def _train(args: argparse.Namespace) -> None:
    models = _models(args.models)
    settings = None
    if args.config:
        read_toml(args.config)  # a missing file or bad TOML is said before the 4 s import below (probe)
        from ranker.registry import load_settings

        settings = load_settings(args.config)  # checked before any training: unknown keys, wrong types
    wh = _require(args.home, EVENTS, "no events in {home}; run `reelsense ingest events FILE` first")
    content = [name for name in models if name in READS_CONTENT]
    if content and not wh.has_rows_on_disk(ITEMS):  # probe: "run extract" first, which then said "no items"
        raise WarehouseNotFound(
            f"{', '.join(content)} {'needs' if len(content) == 1 else 'need'} content vectors, and {wh.home} has no items to embed: "
            "run `reelsense ingest items FILE`, then `reelsense extract`, first, or train only id-only rankers"
        )
    for name in models:
        base = NEEDS_BASE.get(name)
        if base and base not in models:
            forced = f" (--force retrains only the models named: add {base} to --models to retrain it too)" if args.force else ""
            print(f"train-ranker: {name} re-ranks {base}, so {base} is trained (or reused) too{forced}")
    from flows.rank import train_rankers  # after the checks: torch and Prefect take seconds to import

    metas = train_rankers(str(wh.home), models=models, seed=args.seed, device=args.device, force=args.force, settings=settings)
    for name, meta in metas.items():
        how = "reused (same data, content, settings, code)" if meta.get("reused") else f"{meta['fit_seconds']:.1f}s"
        if not meta.get("reused") and meta.get("fit_continued_after"):
            how += f" (continued after epoch {meta['fit_continued_after']})"
        print(f"train-ranker: {name:<22} {how:>28}  version {meta['version']}")


def _evaluate(args: argparse.Namespace) -> None:
    models = _models(args.models)
    wh = _require(args.home, EVENTS, "no events in {home}; run `reelsense ingest events FILE`, then `reelsense train`")
    from flows.rank import evaluate_rankers  # after the checks: torch and Prefect take seconds to import

    results = evaluate_rankers(str(wh.home), models=models, seed=args.seed, max_users=args.max_users, device=args.device, dataset=args.dataset)
    print(f"evaluate ({results['evaluation']}): {results['path']}")
    print("\n".join(results_lines(results)))


def _models(text: str) -> list[str]:
    names = option_names("--models", text, "sasrec,lstm-attn")
    if not names:
        raise ReelsenseError(f"--models {text!r} names no ranker; give some of {', '.join(ALL_MODELS)}, comma-separated")
    check_rankers(names)
    return names


def _require(home: Path, spec, message: str) -> Warehouse:
    wh = Warehouse(home)
    if not wh.has_rows_on_disk(spec):
        raise WarehouseNotFound(message.format(home=wh.home))
    return wh


def _score(args: argparse.Namespace) -> None:
    from flows.console import score_line, split_users

    # Everything a user can get wrong is refused here, before a flow (and its Prefect server) starts;
    # the arguments before flows.score is imported (3-4 s of torch and Prefect).
    if args.candidates is not None and args.retrieval != "similarity":
        raise ReelsenseError(
            "--candidates applies to --retrieval similarity; the default retrieval ranks every item (drop --candidates, or add --retrieval similarity)"
        )
    args.candidates = CANDIDATES if args.candidates is None else args.candidates
    check_arguments(args.model, args.k, args.candidates, args.run_id, args.retrieval, args.replace)
    check_version(args.version)
    check_dask(args.dask_workers, args.dask_address)
    users = split_users(args.users) if args.users is not None else None
    if users == []:
        raise ReelsenseError(f"--users {args.users!r} names no user; give comma-separated user ids, or leave --users out to score everyone")
    wh = _require(args.home, EVENTS, "no events in {home}; run `reelsense ingest events FILE` first")
    check_saved_version(wh.models_dir, args.model, args.version)
    if users is not None:
        users, warning = check_users(wh, users)
        if warning:
            print(f"reelsense: warning: {warning}", file=sys.stderr)
    from flows.score import RunConflict, claim_run, find_misfit, model_version, run_score

    held = bool(args.run_id and not args.replace and run_held(wh, args.run_id))  # a run to complete
    if args.run_id and not args.replace:
        version = model_version(wh, args.model, args.version)
        try:  # the data's digest where the run holds rows; with `samples` stale its part is left out, and the flow checks it after the rebuild
            ranked_from = ranking_inputs(wh) if held else None
            samples_current = stale_samples(wh) is None
            claim_run(wh, args.run_id, f"{args.model}@{version}", replace=False, k=args.k, ranked_from=ranked_from, samples_current=samples_current)
        except RunConflict as conflict:
            # A model that cannot score this warehouse is the first thing to fix (probe: the conflict's
            # advice, --replace, then stopped on the model's misfit).
            raise (find_misfit(wh, args.model, version) or conflict) from None
    else:  # an unknown --version, an untrained model or a damaged LATEST is refused before the flow starts
        model_version(wh, args.model, args.version)
    if args.replace and (warning := replace_warning(wh, args.run_id)):  # after the model checks (review)
        print(f"reelsense: warning: {warning}", file=sys.stderr)
    if held and (warning := unrecorded_warning(wh, args.run_id)):
        print(f"reelsense: warning: {warning}", file=sys.stderr)
    summary = run_score(
        str(wh.home),
        dask_workers=args.dask_workers,
        dask_address=args.dask_address,
        model=args.model,
        k=args.k,
        n_candidates=args.candidates,
        retrieval=args.retrieval,
        users=users,
        run_id=args.run_id,
        shards=args.shards,
        device=args.device,
        version=args.version,
        replace=args.replace,
    )
    print(runnable(score_line(summary)))


def _report(args: argparse.Namespace) -> None:
    wh = _require(args.home, SCORES, "no scores in {home}; run `reelsense score` first")
    if args.truth is not None:
        _check_truth(args.truth, "--truth", "users", Path(args.home))
    run_id = check_run(wh, args.run_id)["run_id"]  # an unknown run is refused before the flow (and torch) loads: probe, 5 s
    from ranker.shifts import ShiftConfig  # numpy only: the config is checked before the flow's import too

    shift_config = override(ShiftConfig(), read_toml(args.config), str(args.config)) if args.config else ShiftConfig()
    if not has_content_vectors(wh):  # probe 48: said only after ~15 s of starting the flow
        raise ReelsenseError(explanations_need_content(wh))
    from flows.analyze import analyze

    summary = analyze(
        str(wh.home),
        run_id=run_id,
        truth_path=str(args.truth) if args.truth else None,
        max_plot_users=args.plot_users,
        device=args.device,
        max_pages=args.pages,
        shift_config=shift_config,
    )
    print(report_line(wh, summary))


def _explain(args: argparse.Namespace) -> None:
    wh = _require(args.home, EVENTS, "no events in {home}; run `reelsense ingest events FILE`, then `reelsense train`")
    check_pair(wh, args.user, args.item)  # an unknown user, item or run is named before torch loads (probe: 5 s)
    if args.run_id is not None:
        check_pair_runs(wh, args.user, args.item, args.run_id)
    from flows.analyze import explain_lines

    print(runnable("\n".join(explain_lines(wh, args.user, args.item, run_id=args.run_id, device=args.device))))


def _serve(args: argparse.Namespace) -> None:
    from flows.serve import check_server, serve_all

    if args.config:
        read_toml(args.config)  # a missing file or bad TOML at once; its settings are checked below
    check_server()  # before the imports below and any warning (probe: 4.7 s, then a warning, then this error)
    from flows.rank import nightly_settings_warning

    wh = Warehouse(args.home)
    config, settings = None, None
    if args.config:
        from ranker.registry import load_settings

        config = args.config.resolve()  # flow runs start in another working folder
        settings = load_settings(config)  # its mistakes now, not at 02:00
        print(f"serve: train-ranker/{args.name} trains with {config}: {settings_summary(settings)}")
    if warning := nightly_settings_warning(wh.models_dir, settings, args.seed):
        print(f"reelsense: warning: {runnable(warning)}", file=sys.stderr)  # probe: its command lacked --home
    wh.home.mkdir(parents=True, exist_ok=True)
    serve_all(str(wh.home), name=args.name, paused=args.paused, train_config=None if config is None else str(config), train_seed=args.seed)


def _list_models(args: argparse.Namespace) -> None:
    wh = Warehouse(args.home)
    # A folder with no warehouse in it (probe: it printed "no trained models", exit 0; a file is refused by `main`);
    # said before the imports (probe: 3.2-3.5 s for a mistyped --home).
    if not wh.home.is_dir() or not (wh.models_dir.is_dir() or wh.db_path.exists()):
        raise ReelsenseError(f"no warehouse at {wh.home}; run `reelsense ingest ...` or `reelsense demo` first, or pass --home")
    from flows.latest import latest_meta
    from ranker.artifacts import list_models, read_meta
    from ranker.registry import chosen_settings

    for folder in sorted(p for p in (wh.models_dir / "rankers").glob("*") if p.is_dir()):  # review: a damaged LATEST went unsaid
        try:
            latest_meta(wh.models_dir, folder.name)
        except ReelsenseError as error:
            print(f"reelsense: warning: {runnable(str(error))}; until then no {folder.name} is marked latest", file=sys.stderr)
    saved = list_models(wh.models_dir)  # a damaged LATEST (said above) marks no version of its ranker latest
    for meta_json in sorted((wh.models_dir / "rankers").glob("*/*/meta.json")):  # those list_models skipped, named
        try:
            read_meta(wh.models_dir, meta_json.parent.parent.name, meta_json.parent.name)
        except ReelsenseError as error:
            print(f"reelsense: skipped {meta_json.parent}: its meta.json is unreadable: {error}", file=sys.stderr)
    stopped = sorted(p for p in (wh.models_dir / "rankers").glob("*/unfinished.pt") if p.is_file())
    data_now = make_data_loader(wh)  # loaded once, and only for a stopped fit that needs it
    for path in stopped:
        print(runnable(_stopped_fit_line(path, data_now)))
    if not saved:
        if not stopped:
            print(runnable(f"no trained models in {wh.models_dir}; run `reelsense train`"))
        return
    rows = [
        {
            "name": m["name"],
            "version": m["version"],
            "latest": "*" if m["latest"] else "",
            "seed": m["seed"],
            "content": m.get("content") if m["name"] in READS_CONTENT else "-",  # id-only: the warehouse's, unused
            "items": m.get("n_items"),
            "data": m["data_fingerprint"],
            "fit_s": m.get("epoch_seconds") if m.get("fit_continued_after") else m.get("fit_seconds"),  # a continued fit: all its epochs
            "continued": str(m.get("fit_continued_after") or ""),  # epochs an earlier, stopped train had finished
            "settings": settings_text(chosen_settings(m["name"], m.get("config"))),  # a retired ranker's: "-"
            "ndcg@10": _metric(m, "overall", "ndcg@10"),
            "masked_ndcg@10": _metric(m, "masked", "ndcg@10"),
        }
        for m in saved
    ]
    print(format_table(pa.Table.from_pylist(rows), max_rows=len(rows), max_width=0))  # review: settings were cut at 48 columns


def _stopped_fit_line(path: Path, data_now: Callable[[], Any]) -> str:
    """What `models` says of a stopped fit (ranker/training.py FitCheckpoint): how far it got, and
    the `train` command, with its seed, settings and device, that continues it, where the warehouse's
    data still gives the fit's key (probe: it promised to continue a fit that new events restart)."""
    from flows.latest import readable_latest
    from ranker.artifacts import code_version, reuse_key
    from ranker.base import device_for
    from ranker.registry import build
    from ranker.training import FitCheckpoint, stopped_fit

    name, when = path.parent.name, datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    was = stopped_fit(path)
    if not was["readable"]:
        return f"{name}: {path} (saved {when}) is not a checkpoint reelsense can read; the next `reelsense train --models {name}` trains over it"
    got = f"{name}: a stopped fit ({count(was['epochs'], 'epoch')} finished, last saved {when})"
    if was["finished"]:
        got = f"{name}: a fit that finished ({count(was['epochs'], 'epoch')}, {when}) but was not saved"
    if was["code"] is None or was["config"] is None:
        return f"{got}; its seed and settings are not recorded, so no command is known to continue it ({path})"
    if was["code"] != code_version():
        return f"{got} of other ranker code; the next `reelsense train --models {name}` trains from epoch 1 and replaces it"
    try:
        defaults = dataclasses.asdict(build(name, "cpu", {}).config)
    except ReelsenseError as error:  # a folder of no ranker this version trains
        return f"{got}; {error} ({path})"
    settings = {k: v for k, v in was["config"].items() if defaults.get(k) != v}
    seed = f" --seed {was['seed']}" if was["seed"] not in (None, 0) else ""
    device = f" --device {was['device']}" if was["device"] and was["device"] != device_for("auto") else ""
    command = f"`reelsense train --models {name}{seed}{device}{' --config FILE' if settings else ''}`"
    file = rankers_toml({name: settings})
    data = data_now()
    if isinstance(data, StaleReason):  # samples not current: train rebuilds it, and only then can the key tell
        return f"{got}; {data}: {command} rebuilds it first, then continues the fit if its rows come out the same, else trains from epoch 1{file}"
    if isinstance(data, str):  # the data cannot be read now: said as it is
        return f"{got}; whether {command} continues it cannot be told now: {data}{file}"
    model = build(name, was["device"] or "cpu", {}, was["config"])
    if FitCheckpoint.for_fit(path, model, data, was["seed"]).key != was["key"]:
        return f"{got}; the data, items or content changed since it ran: {command} trains from epoch 1 and replaces it{file}"
    # <models>/rankers/<name>/unfinished.pt; None where LATEST is damaged (the table below skips it and says so)
    saved = readable_latest(path.parents[2], name)
    if saved is not None and saved.get("reuse_key") == reuse_key(name, model, data, was["seed"]):
        # A stopped `train --force` of the saved model's own fit: train reuses the model and drops the file (probe).
        return f"{got}; the saved {saved['version']} is this fit, finished: {command} reuses it and deletes the file (--force trains from epoch 1){file}"
    return f"{got}; {command} {'saves it without training' if was['finished'] else 'continues it'}{file}"


class StaleReason(str):
    """Why `samples` is not current (ranker/data.py stale_samples), as `models` says it."""


def make_data_loader(wh: Warehouse) -> Callable[[], Any]:
    """The warehouse's ranker data, loaded at the first call and kept (`models` compares each
    stopped fit's key with it); where `samples` is not current, why not (a StaleReason); where the
    data cannot be read, the error's text."""
    from ranker.data import MAX_HISTORY, load_dataset

    @functools.cache
    def data() -> Any:
        reason = stale_samples(wh, MAX_HISTORY)
        if reason is not None:
            return StaleReason(reason)
        try:
            return load_dataset(wh, MAX_HISTORY)
        except ReelsenseError as error:  # rebuilt meanwhile, or unreadable: said, not raised
            return str(error)

    return data


def _metric(meta: dict, slice_name: str, metric: str) -> str:
    value = meta.get("metrics", {}).get(slice_name, {}).get(metric)
    return "-" if value is None else f"{value:.4f}"


def _sql(args: argparse.Namespace) -> None:
    if args.max_rows is not None and args.max_rows < 1:
        raise ReelsenseError(f"--max-rows is {args.max_rows}; expected 1 or more (leave it out for the default)")
    if args.width < 0 or 0 < args.width < 4:
        raise ReelsenseError(f"--width is {args.width}; expected 4 or more columns, or 0 for no limit")
    wh = Warehouse(args.home)
    table = db.query(wh, args.query, db.bind_params(args.query, args.param))
    if args.format == "table":
        print(format_table(table, max_rows=50 if args.max_rows is None else args.max_rows, max_width=args.width))
        return
    shown = table if args.max_rows is None else table.slice(0, args.max_rows)
    sys.stdout.write(format_csv(shown) if args.format == "csv" else format_json(shown))
    if shown.num_rows < table.num_rows:  # on stderr: stdout stays a valid CSV or JSON document
        print(f"reelsense: {shown.num_rows} of {table.num_rows} rows (--max-rows)", file=sys.stderr)


def _sample(args: argparse.Namespace) -> None:
    from extractors.sample import SampleConfig, generate_sample

    if args.out.exists() and not args.out.is_dir():  # probe: a NotADirectoryError traceback
        raise ReelsenseError(f"--out {args.out} is a file; the sample is written to a folder")
    _check_sample_out(args.out, Path(args.home))
    _check_sample_overwrite(args.out)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # probe: `--out afile/sub` or `--out /proc/x`, a traceback
        raise ReelsenseError(f"--out {args.out}: cannot make the folder ({exc.strerror}: {exc.filename}); choose another folder") from exc
    truth = generate_sample(args.out, SampleConfig(seed=args.seed))
    print(f"sample (seed {args.seed}): {len(truth['items'])} items, {len(truth['users'])} users -> {args.out}")


def _check_sample_out(out: Path, home: Path) -> None:
    """Refuse a sample folder that is a home or lies in one of a home's own folders (probe: the
    sample's files landed beside a home's tables, later in its tables/ folder, without a word)."""
    given, out = out, out.resolve()
    for folder in (out, *out.parents):
        wh = Warehouse(folder)
        which = "the home this command uses" if folder == home.resolve() else "a reelsense home" if wh.db_path.exists() or wh.tables_dir.is_dir() else ""
        if not which:
            continue
        if folder == out:
            raise ReelsenseError(f"--out {given} is {which}; give the sample a folder of its own, e.g. --out {folder.parent / 'sample'}")
        if out.relative_to(folder).parts[0] in {wh.tables_dir.name, wh.models_dir.name, wh.reports_dir.name}:
            raise ReelsenseError(
                f"--out {given} lies in {which} {folder}, among its own files; give the sample a folder outside them, e.g. --out {folder.parent / 'sample'}"
            )


def _is_sample_truth(path: Path) -> bool:
    """A truth.json the sample generator wrote (samples made before its mark existed have only this);
    any other file of that name is the folder's own (probe: one with `{}` let the sample overwrite)."""
    try:
        truth = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(truth, dict) and {"seed", "topics", "items", "users"} <= truth.keys()


def _check_sample_overwrite(out: Path) -> None:
    """Refuse a folder that holds files of its own (probe: `sample --out` overwrote a folder's
    items.csv and events.csv and left its other files beside the sample's). An earlier sample, even
    one stopped half way (its mark is written first), is regenerated in place."""
    from extractors.sample import SAMPLE_MARK

    if not out.is_dir() or (out / SAMPLE_MARK).is_file() or _is_sample_truth(out / "truth.json"):
        return
    try:
        held = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # .DS_Store, .gitkeep: no files of the user's
    except OSError as exc:
        raise ReelsenseError(f"--out {out}: cannot list the folder ({exc.strerror or exc}); give the sample a folder you can write to") from exc
    if held:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise ReelsenseError(
            f"--out {out} already holds files ({shown}) and is no earlier sample; "
            "the sample writes items.csv, events.csv, videos/ and truth.json there: give it a new or empty folder"
        )


def _demo(args: argparse.Namespace) -> None:
    from flows.demo import run_demo

    run_demo(Warehouse(args.home), seed=args.seed)


if __name__ == "__main__":
    raise SystemExit(main())
