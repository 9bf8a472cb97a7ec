"""The link emulator: a pure, seeded impairment model and a discrete-event simulator."""
