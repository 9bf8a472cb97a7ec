"""The reliable-transport core: sans-I/O segments, windows, timers and the connection engine."""
