"""The link emulator: a pure, seeded impairment model and a discrete-event simulator."""

from netlab.link.model import GilbertElliott, LinkModel, LinkStats

__all__ = ["GilbertElliott", "LinkModel", "LinkStats"]
