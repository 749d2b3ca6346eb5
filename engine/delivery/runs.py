"""Running a campaign's sending from a command: launch checks, worker processes, progress.

I/O: database, child processes, signals. `herald send`, `herald demo` and the daemon share
this; the command line only parses arguments and prints what it is told.
"""

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from sqlalchemy import Engine

from engine.authoring.campaigns import LoadedCampaign, load_campaign
from engine.authoring.specs import changes, restore, spec_files, spec_folder, spec_hash
from engine.config import Settings
from engine.delivery.channels import build_transports
from engine.delivery.dispatch import Dispatcher, RunSummary, SendOptions
from engine.delivery.packing import Renderers
from engine.delivery.tokens import Keys
from engine.errors import EngineError
from engine.evidence.signing import keep_signed, sign_heads
from engine.statuses import FINAL
from engine.store import campaigns as campaign_store
from engine.store import deliveries, open_database
from engine.store.campaigns import stored_hashes, stored_spec

Process = multiprocessing.process.BaseProcess
_PR_SET_PDEATHSIG = 1  # prctl(2)


class LaunchError(EngineError):
    """The campaign cannot be sent as it stands: not planned, or its files changed."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def spec_changed(engine: Engine, loaded: LoadedCampaign) -> LaunchError:
    """The refusal for a launched campaign whose files differ from those it started with."""
    what = changes(stored_hashes(engine, loaded.campaign.id), spec_files(loaded))
    return LaunchError(
        [
            *what,
            (
                f"{loaded.path}, its templates or its catalogs changed since the campaign "
                "started; a launched campaign keeps its spec: give the corrected campaign a new id"
            ),
        ]
    )


def launched(
    engine: Engine, var: Path, campaign_id: str, *, reading: bool = False
) -> LoadedCampaign | None:
    """The campaign as it started, from the files stored with it (restored under `var`;
    `reading` as specs.restore); None when the database holds no files for it. Raises
    EngineError, OSError."""
    row = campaign_store.get(engine, campaign_id)
    files = campaign_store.stored_files(engine, campaign_id) if row else []
    if not row or not files:
        return None
    folder = spec_folder(var, campaign_id, row["spec_hash"])
    return restore(campaign_id, files, folder, reading=reading)


def check_planned(engine: Engine, loaded: LoadedCampaign) -> None:
    """Raise LaunchError unless the campaign was planned with exactly these files."""
    stored = stored_spec(engine, loaded.campaign.id)
    if stored is None:
        c = loaded.campaign.id
        raise LaunchError([f"campaign {c} has not been planned: run herald plan {c}"])
    if stored != spec_hash(loaded):
        raise spec_changed(engine, loaded)


async def send(
    engine: Engine,
    loaded: LoadedCampaign,
    settings: Settings,
    options: SendOptions,
    on_stopping: Callable[[], None] | None = None,
    watch: Callable[[int, int], None] | None = None,
    sign: bool = True,
    watch_every_s: float = 0.5,
    renderers: Renderers | None = None,
    second_signal_exits: bool = True,
) -> RunSummary:
    """Deliver what is due in this process until done, idle for `options.max_wait_s`, or
    stopped by SIGINT/SIGTERM (the first stops claiming, a second exits at once, unless
    not `second_signal_exits`: a worker's parent may send one as it dies and its command
    another, and the worker must finish what is in flight all the same).

    `watch(final, total)` is called with progress across every worker every `watch_every_s`
    (each call counts the campaign's deliveries: ~0.1 s at a million).
    With `sign`, checkpoints are written every 30 s meanwhile, and once at the end.
    `renderers`: the campaign's, warmed before forking (Workers.renderers).
    """
    stop = asyncio.Event()
    _on_signals(stop, on_stopping, second_signal_exits)
    transports = build_transports(settings, options.concurrency)
    keys = Keys(settings.secret)
    dispatcher = Dispatcher(engine, loaded, keys, transports, options, renderers=renderers)
    watcher = (
        asyncio.create_task(watch_progress(engine, loaded.campaign.id, watch, watch_every_s))
        if watch
        else None
    )
    signed = asyncio.Event()
    signer = asyncio.create_task(keep_signed(settings, engine, signed)) if sign else None
    try:
        return await dispatcher.run(stop)
    finally:
        if watcher:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if signer:
            signed.set()
            await signer
        for transport in transports.values():
            await transport.close()


def _on_signals(
    stop: asyncio.Event, on_stopping: Callable[[], None] | None, second_exits: bool
) -> None:
    loop = asyncio.get_running_loop()

    def handle() -> None:
        if stop.is_set():
            if second_exits:
                raise SystemExit(130)
            return
        if on_stopping:
            on_stopping()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle)


def progress(engine: Engine, campaign_id: str) -> tuple[int, int]:
    """(final, total) deliveries of a campaign, counting every worker's."""
    counts = deliveries.progress(engine, campaign_id)
    return sum(v for k, v in counts.items() if k in FINAL), sum(counts.values())


async def watch_progress(
    engine: Engine, campaign_id: str, report: Callable[[int, int], None], every_s: float = 0.5
) -> None:
    """Call `report(final, total)` now and every `every_s` seconds, until cancelled."""
    while True:
        report(*await asyncio.to_thread(progress, engine, campaign_id))
        await asyncio.sleep(every_s)


@dataclass
class WorkersEnded:
    """What the extra workers did, once every one has ended: their outcomes summed, and
    how each that did not finish its run ended."""

    counts: Counter[str] = field(default_factory=Counter)
    stopped: bool = False
    problems: list[str] = field(default_factory=list)

    def add_to(self, summary: RunSummary) -> RunSummary:
        """`summary` (this process's run) with the workers' outcomes added."""
        counts = dict(self.counts + Counter(summary.counts))
        return RunSummary(counts, summary.stopped or self.stopped)


@dataclass(frozen=True)
class Workers:
    """Extra worker processes running the same dispatcher on the same database. Each
    tells the command what it did through a pipe: its outcomes, or why it failed."""

    processes: Sequence[Process]
    pipes: Sequence[Connection] = ()
    renderers: Renderers | None = None  # warmed before forking: for this process's send too

    @classmethod
    def spawn(
        cls,
        loaded: LoadedCampaign,
        options: SendOptions,
        count: int,
        engine: Engine | None = None,
    ) -> "Workers":
        """Start `count` workers sending `loaded` (the campaign at loaded.path).

        Forked when nothing can cross the fork: `engine`'s pooled connections are closed
        first (this process reconnects on its next statement; the child opens its own
        engine) and no other thread runs. A forked child starts with every module
        imported, where a spawned one spent ~0.8 s of CPU importing them again, and with
        the campaign's renderers warmed here first (`renderers`, for this process's own
        send too): each worker prepared every language again (catalogs, Babel's
        data, Jinja environments, skeletons), ~0.26 s of CPU at 8,750 emails each.
        Otherwise (or without `engine`) spawned, and each child loads the campaign."""
        fork = count > 0 and engine is not None and threading.active_count() == 1
        renderers = None
        if fork and engine is not None:
            renderers = Renderers.of(loaded)
            renderers.warm(loaded, deliveries.samples(engine, loaded.campaign.id))
            engine.dispose()  # no SQLite descriptor or PostgreSQL socket may be shared
        context = (
            multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
        )
        # forked, the child gets these objects as they are; spawned, only the path
        args = (
            (str(loaded.path), options, loaded, renderers) if fork else (str(loaded.path), options)
        )
        processes, pipes = [], []
        for _ in range(count):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(target=_worker_main, args=(writer, *args), daemon=False)
            process.start()
            writer.close()  # the child's end: closed here, a child that dies reads as EOF
            processes.append(process)
            pipes.append(reader)
        return cls(processes, pipes, renderers)

    def join(self, stop_first: bool = False) -> WorkersEnded:
        """Wait for every worker (SIGTERM first: they finish their messages in flight) and
        gather what each did."""
        ended = WorkersEnded()
        for number, (process, pipe) in enumerate(
            zip(self.processes, self.pipes, strict=True), start=2
        ):
            if stop_first:
                process.terminate()
            try:
                kind, value = pipe.recv()
            except EOFError:  # it died before it could tell: killed, or an error we lack
                kind, value = "died", None
            finally:
                pipe.close()
            process.join()
            if kind == "done":
                summary: RunSummary = value
                ended.counts.update(summary.counts)
                ended.stopped |= summary.stopped
            elif kind == "failed":
                ended.problems.append(f"worker {number}: {value}")
            else:
                ended.problems.append(
                    f"worker {number} {_how_it_ended(process.exitcode)}: what it did is not "
                    "in the figures above (herald report counts everything)"
                )
        return ended


def _how_it_ended(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return f"was killed ({name}) before the end of its run"
    return f"exited with code {code} before the end of its run"


def _worker_main(
    pipe: Connection,
    path: str,
    options: SendOptions,
    loaded: LoadedCampaign | None = None,
    renderers: Renderers | None = None,
) -> None:
    """One extra worker: its run's outcome goes up `pipe`; a failure too, then exit 1.

    It stops as on SIGTERM (finishing what is in flight) when the command dies, rather than
    sending on unseen; then it signs what it wrote, which the command would have signed."""
    parent = os.getppid()
    _stop_with_parent(parent)
    try:
        settings = Settings.from_env()
        engine = open_database(settings.db_url)
        loaded = loaded or load_campaign(Path(path))
        summary = asyncio.run(
            send(
                engine,
                loaded,
                settings,
                options,
                sign=False,
                renderers=renderers,
                second_signal_exits=False,
            )
        )
        if os.getppid() != parent:  # orphaned: no command is left to sign
            sign_heads(settings, engine)
    except EngineError as exc:  # our setup or a refusing server: the command says it
        if os.getppid() == parent:
            pipe.send(("failed", str(exc)))
        raise SystemExit(1) from None
    if os.getppid() == parent:
        pipe.send(("done", summary))


def _stop_with_parent(parent: int) -> None:
    """SIGTERM this process when its parent dies (Linux's PR_SET_PDEATHSIG; elsewhere the
    worker runs on to its end). Checked again after: the parent may be gone already. The
    signal comes once for each of the parent's threads that dies holding this child."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
