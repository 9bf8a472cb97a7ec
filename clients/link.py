"""``netlab link``: a UDP relay that behaves like a bad link, for any UDP program.

Strategy: :class:`~netlab.aio.relay.LinkRelay` with one seeded
:class:`~netlab.link.model.LinkModel` per direction, both built from the same flags.  Start it
between a client and a server (``--listen`` is where the client sends, ``--to`` is the server)
and every datagram in either direction may be lost, corrupted, duplicated, reordered, delayed
and rate-limited.  The kernel offers none of this on loopback (no netem here, and it drops
datagrams with a bad UDP checksum silently), so the emulator sits above the socket.

The same ``--seed`` gives the same fates for the same sequence of datagrams, so a failure seen
once can be replayed.  Ctrl-C or SIGTERM stops the relay and prints what the link did.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import sys
from functools import partial

import click
import trio

from netlab.addr import format_hostport, parse_hostport
from netlab.aio.endpoint import open_udp_endpoint
from netlab.aio.rdt import bind_address_for, resolve_udp
from netlab.aio.relay import DEFAULT_IDLE_TIMEOUT, LinkRelay, RelayStats
from netlab.aio.shutdown import Lifetime, Service, run_services
from netlab.link.model import GilbertElliott, LinkModel
from netlab.units import DURATION, FRACTION, RATE, SIZE, format_bytes, parse_fraction

__all__ = ["LinkSettings", "command", "parse_burst", "serve"]

RELAY_SOCKET_BUFFER = 4 << 20  # bytes; bursts of 64 KiB datagrams must not overflow our own sockets


@dataclasses.dataclass(frozen=True)
class LinkSettings:
    """Everything the flags say about the link; both directions get the same impairments."""

    loss: float = 0.0
    burst: GilbertElliott | None = None
    corrupt: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0  # seconds
    jitter: float = 0.0  # seconds
    rate_bps: float | None = None
    queue_bytes: int = 64 * 1024
    seed: int = 0

    def model(self, direction: str) -> LinkModel:
        """The model of one direction; each has its own stream of random numbers from the seed."""
        rng = random.Random(f"{self.seed}/{direction}")
        return LinkModel(
            rng,
            loss=self.loss,
            burst=self.burst,
            corrupt=self.corrupt,
            duplicate=self.duplicate,
            reorder=self.reorder,
            delay=self.delay,
            jitter=self.jitter,
            rate_bps=self.rate_bps,
            queue_bytes=self.queue_bytes,
        )

    def describe(self) -> str:
        parts = [f"loss {self.loss:.1%}"]
        if self.burst is not None:
            parts.append(f"burst {self.burst}")
        parts += [
            f"corrupt {self.corrupt:.1%}",
            f"duplicate {self.duplicate:.1%}",
            f"reorder {self.reorder:.1%}",
        ]
        parts.append(f"delay {self.delay * 1e3:g} ms +- {self.jitter * 1e3:g} ms")
        if self.rate_bps:
            parts.append(f"rate {self.rate_bps / 1e6:g} Mbit/s, queue {format_bytes(self.queue_bytes)}")
        parts.append(f"seed {self.seed}")
        return ", ".join(parts)


#: Short names for the Gilbert-Elliott parameters, as netem's ``gemodel p r 1-h 1-k`` uses them.
_BURST_ALIASES = {"p": "p_good_to_bad", "r": "p_bad_to_good", "bad": "loss_bad", "good": "loss_good"}


def parse_burst(text: str) -> GilbertElliott:
    """Gilbert-Elliott burst loss from a flag.

    Two forms: ``"5%/4"`` (a mean loss of 5% in bursts of 4 datagrams on average), or the chain's
    parameters ``"p=1%,r=30%[,bad=100%,good=0%]"``: p = P(good -> bad), r = P(bad -> good), and
    the loss probability in each state (the long names of :class:`GilbertElliott` work too).

    Raises:
        ValueError: an unknown name, a bad value, or a missing required parameter.
    """
    if "/" in text:
        loss, _, length = text.partition("/")
        try:
            mean_burst = float(length)
        except ValueError:
            raise ValueError(f"burst length must be a number of datagrams, got {length!r}") from None
        return GilbertElliott.from_loss(parse_fraction(loss), mean_burst)
    fields = {f.name for f in dataclasses.fields(GilbertElliott)}
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = (part.strip() for part in item.partition("="))
        key = _BURST_ALIASES.get(key, key)
        if not eq or key not in fields:
            raise ValueError(f"burst is LOSS/LENGTH or p=P,r=P[,bad=P,good=P]; got {item!r}")
        values[key] = parse_fraction(value)
    try:
        return GilbertElliott(**values)
    except TypeError as exc:
        raise ValueError(f"incomplete burst parameters {text!r} (need at least p and r)") from exc


async def serve(
    listen: tuple[str, int],
    target: tuple[str, int],
    settings: LinkSettings,
    stats: list[RelayStats],
    models: dict[str, LinkModel],
    lifetime: Lifetime,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Relay from ``listen`` to ``target`` until the lifetime stops; fills ``stats`` and ``models``."""
    server = await resolve_udp(*target)
    local = bind_address_for(server[0])  # relay sockets speak to the server
    models["up"], models["down"] = settings.model("up"), settings.model("down")
    endpoint = await open_udp_endpoint(*listen, rcvbuf=RELAY_SOCKET_BUFFER, sndbuf=RELAY_SOCKET_BUFFER)
    relay = LinkRelay(
        endpoint,
        server,
        upstream=models["up"],
        downstream=models["down"],
        open_endpoint=partial(
            open_udp_endpoint, local, 0, rcvbuf=RELAY_SOCKET_BUFFER, sndbuf=RELAY_SOCKET_BUFFER
        ),
        idle_timeout=idle_timeout,
    )
    stats.append(relay.stats)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(relay.run)
            where = format_hostport(*endpoint.local_address)
            task_status.started([f"relaying {where} -> {format_hostport(*server)}", settings.describe()])
            await lifetime.stopping.wait()
            nursery.cancel_scope.cancel()
    finally:
        await endpoint.aclose()


def summary(stats: RelayStats, models: dict[str, LinkModel]) -> list[str]:
    """What the link did, one line per direction."""
    lines = [
        f"link: {stats.clients} client(s), {stats.refused} refused, {stats.expired} expired after idling"
    ]
    for label, direction, key in (
        ("client -> server", stats.upstream, "up"),
        ("server -> client", stats.downstream, "down"),
    ):
        m = models[key].stats
        lines.append(
            f"  {label}: {direction.received} in, {direction.delivered} delivered, {m.lost} lost, "
            f"{m.corrupted} corrupted, {m.duplicated} duplicated, {m.reordered} reordered, "
            f"{m.queue_dropped} dropped by the rate queue"
        )
    return lines


@click.command()
@click.option(
    "--listen", default="127.0.0.1:9000", show_default=True, metavar="HOST:PORT", help="Where clients send."
)
@click.option("--to", "to", required=True, metavar="HOST:PORT", help="The server datagrams are relayed to.")
@click.option("--loss", type=FRACTION, default="0", help="Independent loss probability, e.g. 5%.")
@click.option("--burst", help="Gilbert-Elliott bursty loss: LOSS/LENGTH (5%/4) or p=1%,r=30%.")
@click.option("--corrupt", type=FRACTION, default="0", help="Probability a datagram is corrupted.")
@click.option("--duplicate", type=FRACTION, default="0", help="Probability a datagram arrives twice.")
@click.option("--reorder", type=FRACTION, default="0", help="Probability a datagram is held back.")
@click.option("--delay", type=DURATION, default="0", help="One-way delay, e.g. 10ms.")
@click.option("--jitter", type=DURATION, default="0", help="Random variation of the delay, e.g. 2ms.")
@click.option("--rate", type=RATE, help="Bottleneck rate, e.g. 10mbit (tc units).")
@click.option("--queue", type=SIZE, default="64k", show_default=True, help="Bottleneck queue (with --rate).")
@click.option("--seed", type=int, help="Seed of the random fates (printed when not given).")
@click.option(
    "--idle-timeout",
    type=DURATION,
    default=f"{DEFAULT_IDLE_TIMEOUT:g}s",
    show_default=True,
    help="Forget a client silent this long.",
)
def command(
    listen: str,
    to: str,
    loss: float,
    burst: str | None,
    corrupt: float,
    duplicate: float,
    reorder: float,
    delay: float,
    jitter: float,
    rate: float | None,
    queue: int,
    seed: int | None,
    idle_timeout: float,
) -> None:
    """Relay UDP between clients and a server across an emulated bad link, both ways."""
    try:
        listen_at = parse_hostport(listen, default_port=9000)
        target = parse_hostport(to)
        settings = LinkSettings(
            loss=loss,
            burst=parse_burst(burst) if burst else None,
            corrupt=corrupt,
            duplicate=duplicate,
            reorder=reorder,
            delay=delay,
            jitter=jitter,
            rate_bps=rate,
            queue_bytes=queue,
            seed=secrets.randbelow(2**32) if seed is None else seed,
        )
        settings.model("check")  # the model validates its parameters
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    stats: list[RelayStats] = []
    models: dict[str, LinkModel] = {}

    def on_started(_service: Service, lines: list[str]) -> None:
        for line in lines:
            click.echo(f"link: {line}")
        sys.stdout.flush()

    run = partial(serve, listen_at, target, settings, stats, models, idle_timeout=idle_timeout)
    try:
        trio.run(partial(run_services, [Service("link", run)], grace_period=1.0, on_started=on_started))
    except OSError as exc:
        raise click.ClickException(f"cannot relay {listen} -> {to}: {exc.strerror or exc}") from exc
    if stats:
        for line in summary(stats[0], models):
            click.echo(line)
