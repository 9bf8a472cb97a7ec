"""Benchmark of the reliable transport: goodput against the textbook models, and on loopback.

Part (a) runs Go-Back-N and Selective Repeat through the discrete-event simulator
(``netlab.link.sim``) on an emulated 10 Mbit/s link with a 20 ms round trip, for several windows
and loss rates, and puts each median goodput next to the protocol's analytic efficiency
(Stallings, *Data and Computer Communications*, ch. 7; Kurose & Ross section 3.4):

    a = Tprop / Tframe            1 + 2a = (Tframe + RTT) / Tframe   (frames per round trip)
    SR:   U = 1 - p                                   if N >= 1 + 2a
          U = N (1 - p) / (1 + 2a)                     if N <  1 + 2a
    GBN:  U = (1 - p) / (1 + (N - 1) p)                 if N >= 1 + 2a
          U = N (1 - p) / ((1 + 2a)(1 - p + N p))        if N <  1 + 2a
    goodput = U * R * mss / (mss + header)

Both GBN forms charge every loss the whole window of N frames (Stallings' K = N), because this
Go-Back-N resends every outstanding frame; ``docs/bench/rdt.md`` says why, and what the models
assume.  Losses hit the data direction only; the bottleneck queue is deep enough never to drop
(every run checks that it did not), so the only losses are the model's p.  Each run is timed from
the client's Connected event to the server's end of data, less the last frame's one-way delay:
the steady state the formulas describe, without the handshake.  Each point also records the
fraction of the time the link was busy and the largest queue it held, which explain the points
that leave the model.  Virtual time makes it deterministic and fast.

Part (b) moves the same number of bytes over real UDP sockets on 127.0.0.1 with the trio driver
(Selective Repeat, 60 KiB segments), and over a trio TCP stream, in the same process and run,
repeats each, and prints the medians and the ratio.

Writes docs/bench/rdt.csv, docs/bench/rdt.png and the generated block of docs/bench/rdt.md.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import trio

from netlab.aio.endpoint import open_udp_endpoint
from netlab.aio.rdt import RdtListener, open_rdt_stream
from netlab.aio.rdt_stream import socket_buffer_size
from netlab.link.model import LinkModel
from netlab.link.sim import transfer
from netlab.transport.engine import TransportParams
from netlab.transport.segment import HEADER_SIZE, MAX_MSS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first

OUT = Path(__file__).resolve().parent.parent / "docs" / "bench"

RATE = 10e6  # bits per second
DELAY = 0.010  # seconds one way: a 20 ms round trip
MSS = 1200  # bytes
WINDOWS = {"gbn": (4, 8, 16, 32, 64), "sr": (4, 8, 16, 32, 64, 128, 256, 512, 1024)}
LOSSES = (0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.20)
SIM_BYTES = 4_000_000  # about 3300 frames: three windows of the largest N
SEEDS = 3
TOLERANCE = 0.10  # the target: within 10% of the model
QUEUE_BYTES = 1 << 24  # the bottleneck queue: far more than any window, even gone back twice
BEGIN, END = "<!-- results: begin -->", "<!-- results: end -->"  # the generated block of rdt.md

LOOPBACK_BYTES = 100 << 20
LOOPBACK_RUNS = 5
LOOPBACK_MSS = 60 << 10
LOOPBACK_WINDOW = 32
CHUNK = 1 << 20  # bytes per send_all


@dataclass(frozen=True)
class Row:
    experiment: str  # "sim" or "loopback"
    protocol: str
    window: int
    loss: float
    goodput_bps: float  # median
    model_bps: float  # 0 when there is no model (loopback)
    runs: int
    busy: float = 0.0  # median fraction of the time the bottleneck sent frames (sim)
    queue_frames: float = 0.0  # median backlog a frame found at the bottleneck, in frames (sim)

    @property
    def ratio(self) -> float:
        return self.goodput_bps / self.model_bps if self.model_bps else 0.0

    @property
    def within(self) -> bool:
        return abs(self.ratio - 1) <= TOLERANCE


class RecordingLink(LinkModel):
    """A link model that adds up the backlog each frame finds: the queue that lengthens the RTT."""

    backlog = 0  # bytes, summed over frames
    frames = 0

    def transmit(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        arrivals = super().transmit(data, now)
        self.backlog += self.queued_bytes - len(data)  # what waits ahead of it (never dropped here)
        self.frames += 1
        return arrivals


# -- (a) the simulator against the models -----------------------------------------------------------


def frames_per_round_trip() -> float:
    """1 + 2a: a data frame's transmission plus the round trip (propagation and the ACK's own)."""
    t_frame = (MSS + HEADER_SIZE) * 8 / RATE
    rtt = 2 * DELAY + HEADER_SIZE * 8 / RATE
    return (t_frame + rtt) / t_frame


def model_goodput(protocol: str, window: int, p: float) -> float:
    """The textbook goodput in bits per second (see the module docstring)."""
    k = frames_per_round_trip()
    u = (1 - p) * min(1.0, window / k)
    if protocol == "gbn":
        u /= 1 + (window - 1) * p  # every loss costs the N frames of the window
    return u * RATE * MSS / (MSS + HEADER_SIZE)


def simulate(protocol: str, window: int, p: float, seed: int) -> tuple[float, float, float]:
    """One simulated transfer: goodput (bit/s), busy fraction of the link, mean backlog (frames)."""
    data = random.Random(seed).randbytes(SIM_BYTES)
    forward = RecordingLink(
        random.Random(f"fwd{seed}"), loss=p, delay=DELAY, rate_bps=RATE, queue_bytes=QUEUE_BYTES
    )
    back = LinkModel(random.Random(f"back{seed}"), delay=DELAY, rate_bps=RATE, queue_bytes=QUEUE_BYTES)
    params = TransportParams(protocol=protocol, window=window, seq_bits=16, mss=MSS, send_buffer=1 << 24)
    result = transfer(data, params, forward, back, seed=seed)
    where = f"{protocol} N={window} p={p} seed {seed}"
    if result.delivered != data or result.connected_at is None:
        raise SystemExit(f"{where}: data corrupted or incomplete: {result.failures}")
    if forward.stats.queue_dropped or back.stats.queue_dropped:
        raise SystemExit(f"{where}: the bottleneck queue dropped frames; make QUEUE_BYTES larger")
    # From the client's Connected to the server's end of data, less the last frame's flight.
    elapsed = result.duration - result.connected_at - DELAY
    busy = forward.stats.sent * (MSS + HEADER_SIZE) * 8 / RATE / elapsed
    backlog = forward.backlog / forward.frames / (MSS + HEADER_SIZE)
    return len(data) * 8 / elapsed, min(1.0, busy), backlog


def run_simulations() -> list[Row]:
    rows = []
    for protocol, windows in WINDOWS.items():
        for window in windows:
            for p in LOSSES:
                runs = [simulate(protocol, window, p, seed) for seed in range(SEEDS)]
                row = Row(
                    "sim",
                    protocol,
                    window,
                    p,
                    statistics.median(r[0] for r in runs),
                    model_goodput(protocol, window, p),
                    SEEDS,
                    busy=statistics.median(r[1] for r in runs),
                    queue_frames=statistics.median(r[2] for r in runs),
                )
                rows.append(row)
                print(
                    f"sim {protocol} N={window:<4} loss={p:4.0%}: {row.goodput_bps / 1e6:6.2f} Mbit/s, "
                    f"model {row.model_bps / 1e6:6.2f}, ratio {row.ratio:.2f}, busy {row.busy:.2f}, "
                    f"backlog {row.queue_frames:.0f} frames"
                )
    return rows


# -- (b) loopback: the trio driver against TCP -------------------------------------------------------


async def _rdt_once() -> float:
    size = socket_buffer_size(LOOPBACK_WINDOW, LOOPBACK_MSS)
    endpoint = await open_udp_endpoint("127.0.0.1", 0, rcvbuf=size, sndbuf=size)
    listener = RdtListener(endpoint, TransportParams(window=LOOPBACK_WINDOW, mss=MAX_MSS))
    params = TransportParams(
        window=LOOPBACK_WINDOW, mss=LOOPBACK_MSS, send_buffer=2 * LOOPBACK_WINDOW * LOOPBACK_MSS
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.serve, _sink)
        started = time.perf_counter()
        stream = await open_rdt_stream(*endpoint.local_address, params, nursery=nursery)
        await _source(stream)
        elapsed = time.perf_counter() - started
        await stream.aclose()
        nursery.cancel_scope.cancel()
    await endpoint.aclose()
    return LOOPBACK_BYTES / elapsed


async def _tcp_once() -> float:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, _sink, listeners)
        started = time.perf_counter()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await _source(stream)
        elapsed = time.perf_counter() - started
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return LOOPBACK_BYTES / elapsed


async def _source(stream: trio.abc.HalfCloseableStream) -> None:
    """Send the bytes and half-close, then wait for the receiver's EOF: everything arrived."""
    block = b"\xa5" * CHUNK
    for _ in range(LOOPBACK_BYTES // CHUNK):
        await stream.send_all(block)
    await stream.send_eof()
    while await stream.receive_some():
        pass


async def _sink(stream: trio.abc.HalfCloseableStream) -> None:
    total = 0
    while chunk := await stream.receive_some(1 << 20):
        total += len(chunk)
    if total != LOOPBACK_BYTES:
        raise RuntimeError(f"received {total} of {LOOPBACK_BYTES} bytes")
    await stream.send_eof()


def run_loopback() -> list[Row]:
    rows = []
    measures: dict[str, Callable[[], float]] = {
        "rdt-sr": lambda: trio.run(_rdt_once),
        "tcp": lambda: trio.run(_tcp_once),
    }
    results: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(LOOPBACK_RUNS):  # interleaved, so both see the same machine load
        for name, measure in measures.items():
            results[name].append(measure())
    for name, runs in results.items():
        window = LOOPBACK_WINDOW if name.startswith("rdt") else 0
        rows.append(Row("loopback", name, window, 0.0, statistics.median(runs) * 8, 0.0, len(runs)))
        print(
            f"loopback {name}: median {statistics.median(runs) / 1e6:.1f} MB/s "
            f"(runs: {', '.join(f'{r / 1e6:.0f}' for r in runs)})"
        )
    rdt, tcp = rows[0].goodput_bps, rows[1].goodput_bps
    print(f"loopback ratio rdt/tcp: {rdt / tcp:.2f}")
    return rows


# -- output ------------------------------------------------------------------------------------------


def write_csv(rows: list[Row], path: Path) -> None:
    fields = ["experiment", "protocol", "window", "loss", "goodput_bps", "model_bps", "ratio", "runs"]
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow([*fields, "busy", "queue_frames"])
        for r in rows:
            out.writerow(
                [
                    r.experiment,
                    r.protocol,
                    r.window,
                    r.loss,
                    f"{r.goodput_bps:.0f}",
                    f"{r.model_bps:.0f}",
                    f"{r.ratio:.3f}",
                    r.runs,
                    f"{r.busy:.3f}",
                    f"{r.queue_frames:.1f}",
                ]
            )


def plot(rows: list[Row], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, protocol, title in zip(axes, ("gbn", "sr"), ("Go-Back-N", "Selective Repeat"), strict=True):
        for i, window in enumerate(WINDOWS[protocol]):
            pts = [r for r in rows if r.experiment == "sim" and r.protocol == protocol and r.window == window]
            color = f"C{i}"
            loss = [r.loss * 100 for r in pts]
            ax.plot(loss, [r.goodput_bps / 1e6 for r in pts], "o-", color=color, label=f"N={window}")
            ax.plot(loss, [r.model_bps / 1e6 for r in pts], "--", color=color, alpha=0.6)
        ax.set_title(f"{title}: 10 Mbit/s, 20 ms RTT, MSS {MSS} (dashed: model)")
        ax.set_xlabel("loss on the data direction (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("goodput (Mbit/s)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8, loc="lower left", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def results_block(rows: list[Row]) -> list[str]:
    """The generated part of rdt.md: every point, marked, and the summaries."""
    sim = [r for r in rows if r.experiment == "sim"]
    k = frames_per_round_trip()
    losses = " | ".join(f"{p:.0%}" for p in LOSSES)
    lines = [
        f"1 + 2a = {k:.1f} frames per round trip. Median of {SEEDS} seeds, {SIM_BYTES // 1000} kB "
        f"each. Each cell: measured / model goodput in Mbit/s, ✓ when within {TOLERANCE:.0%}.",
        "",
        f"| protocol | N | {losses} | within |",
        "|" + " --- |" * (len(LOSSES) + 3),
    ]
    for protocol, windows in WINDOWS.items():
        for window in windows:
            points = [r for r in sim if r.protocol == protocol and r.window == window]
            cells = [
                f"{r.goodput_bps / 1e6:.2f} / {r.model_bps / 1e6:.2f}{' ✓' if r.within else ''}"
                for r in points
            ]
            within = sum(r.within for r in points)
            lines.append(f"| {protocol} | {window} | {' | '.join(cells)} | {within}/{len(points)} |")
    lines += [
        "",
        "Selective Repeat with N >= 1 + 2a: the backlog a frame found at the bottleneck without loss",
        "(frames) and the fraction of the time the bottleneck was busy at each loss rate (the model's",
        "U = 1 - p assumes a link busy all the time):",
        "",
        f"| N | backlog | {losses} |",
        "|" + " --- |" * (len(LOSSES) + 2),
    ]
    for window in (n for n in WINDOWS["sr"] if n >= k):
        points = [r for r in sim if r.protocol == "sr" and r.window == window]
        busy = " | ".join(f"{r.busy:.2f}" for r in points)
        lines.append(f"| {window} | {points[0].queue_frames:.0f} | {busy} |")
    groups: list[tuple[str, Callable[[Row], bool]]] = [
        ("lossless, every protocol and window", lambda r: r.loss == 0),
        ("GBN, N >= 1 + 2a, with loss", lambda r: r.protocol == "gbn" and r.window >= k and r.loss > 0),
        ("GBN, N < 1 + 2a, with loss", lambda r: r.protocol == "gbn" and r.window < k and r.loss > 0),
        ("SR, N >= 1 + 2a, with loss", lambda r: r.protocol == "sr" and r.window >= k and r.loss > 0),
        ("SR, N < 1 + 2a, with loss", lambda r: r.protocol == "sr" and r.window < k and r.loss > 0),
    ]
    lines += ["", f"Within {TOLERANCE:.0%} of the model:", ""]
    for label, member in groups:
        group = [r for r in sim if member(r)]
        lines.append(f"- {label}: {sum(r.within for r in group)} of {len(group)} points")
    lines.append(f"- all: {sum(r.within for r in sim)} of {len(sim)} points")
    loop = {r.protocol: r for r in rows if r.experiment == "loopback"}
    if loop:
        rdt, tcp = loop["rdt-sr"].goodput_bps / 8e6, loop["tcp"].goodput_bps / 8e6
        lines += [
            "",
            "Loopback, real sockets, same process, median of "
            f"{LOOPBACK_RUNS} runs of {LOOPBACK_BYTES >> 20} MiB each:",
            "",
            "| transfer | median goodput |",
            "| --- | --- |",
            f"| rdt (SR, N={LOOPBACK_WINDOW}, MSS {LOOPBACK_MSS}) | {rdt:.0f} MB/s |",
            f"| trio TCP stream | {tcp:.0f} MB/s |",
            f"| ratio rdt / TCP | {rdt / tcp:.2f} |",
        ]
    return lines


def write_markdown(rows: list[Row], path: Path) -> None:
    """Replace the generated block of ``path``; the prose around it is written by hand."""
    block = [BEGIN, *results_block(rows), END]
    text = path.read_text() if path.exists() else f"# Reliable transport benchmark\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + "\n".join(block) + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-loopback", action="store_true", help="only the simulations")
    args = parser.parse_args()
    rows = run_simulations()
    if not args.skip_loopback:
        rows += run_loopback()
    OUT.mkdir(parents=True, exist_ok=True)
    write_csv(rows, OUT / "rdt.csv")
    plot(rows, OUT / "rdt.png")
    write_markdown(rows, OUT / "rdt.md")
    print(f"wrote {OUT / 'rdt.csv'}, {OUT / 'rdt.png'}, {OUT / 'rdt.md'}")


if __name__ == "__main__":
    main()
