"""netlab: real network protocol implementations on trio.

Every protocol is written twice over: a sans-I/O *machine* (``netlab.transport``,
``netlab.link``, ``netlab.proto``) and a trio *driver* (``netlab.aio``, ``servers``,
``clients``).  See the README for what each server does and how to run it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
