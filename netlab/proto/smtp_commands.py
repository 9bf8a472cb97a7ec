"""SMTP command lines: parsing what a client sent, and writing what our client sends.

Strategy: :func:`parse_command_untrusted` turns one line (without CRLF) into an event or raises
:class:`RemoteProtocolError` with the reply that refuses it, choosing the code the way RFC 5321
section 4.2.4 tells apart "unrecognised" (500) from "not implemented" (502) and "bad arguments"
(501), and RFC 3463 the enhanced code.  Paths are checked against the grammar of RFC 5321
section 4.1.2, widened to UTF-8 for SMTPUTF8 (RFC 6531 section 3.3), and their length limits
(section 4.5.3.1).  :func:`format_command` is the inverse the client machine uses.
"""

from __future__ import annotations

import ipaddress
import re

from netlab.proto.smtp_events import (
    Auth,
    Data,
    Event,
    Hello,
    Help,
    LocalProtocolError,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    RemoteProtocolError,
    Reply,
    Rset,
    StartTls,
    Vrfy,
)

__all__ = ["format_command", "parse_command_untrusted", "parse_mailbox_untrusted"]

_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_UTF8 = "\u0080-\U0010ffff"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{u}]|\\[\x20-\x7e])*"'
_SUBDOMAIN = r"[A-Za-z0-9{u}](?:[A-Za-z0-9\-{u}]*[A-Za-z0-9{u}])?"


def _mailbox_re(utf8: bool) -> re.Pattern[str]:
    u = _UTF8 if utf8 else ""
    atom = f"[{_ATEXT}{u}]+"
    local = f"(?:{atom}(?:\\.{atom})*|{_QUOTED.format(u=u)})"
    sub = _SUBDOMAIN.format(u=u)
    domain = rf"(?:{sub}(?:\.{sub})*|\[[^\[\]\\\s]+\])"
    return re.compile(f"(?P<local>{local})@(?P<domain>{domain})")


_MAILBOX = {False: _mailbox_re(False), True: _mailbox_re(True)}
# A-d-l, the obsolete source route "@relay1,@relay2:", is accepted and ignored (RFC 5321 C).
_SOURCE_ROUTE = re.compile(r"@[^,:]+(?:,@[^,:]+)*:")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+")
_MAX_LOCAL = 64  # octets, RFC 5321 section 4.5.3.1.1
_MAX_DOMAIN = 255  # octets, section 4.5.3.1.2
_MAX_PATH = 256  # octets including the angle brackets, section 4.5.3.1.3


def _err(code: int, enhanced: str, text: str) -> RemoteProtocolError:
    return RemoteProtocolError(Reply(code, text, enhanced))


def parse_mailbox_untrusted(text: str, *, utf8: bool = False) -> str | None:
    """``text`` if it is a valid Mailbox (local@domain), else None."""
    match = _MAILBOX[utf8].fullmatch(text)
    if match is None:
        return None
    if len(match["local"].encode()) > _MAX_LOCAL or len(match["domain"].encode()) > _MAX_DOMAIN:
        return None
    literal = match["domain"]
    if literal.startswith("["):
        body = literal[1:-1]
        if body.lower().startswith("ipv6:"):
            body = body[5:]
        try:
            ipaddress.ip_address(body)
        except ValueError:
            return None
    return text


def _split_path(args: str, what: str, *, enhanced: str) -> tuple[str, list[str]]:
    """``"<path> PARAMS"`` -> (the text between the brackets, the parameters)."""
    args = args.lstrip(" ")
    if not args.startswith("<") or ">" not in args:
        raise _err(501, "5.5.4", f"Syntax: {what}:<address> (angle brackets are required)")
    end = args.index(">")
    path, rest = args[1:end], args[end + 1 :]
    if len(path) + 2 > _MAX_PATH:
        raise _err(501, enhanced, "Path too long (RFC 5321 section 4.5.3.1.3)")
    if rest and not rest.startswith(" "):
        raise _err(501, "5.5.4", "Syntax: a space must separate the path from its parameters")
    route = _SOURCE_ROUTE.match(path)
    if route:
        path = path[route.end() :]
    return path, rest.split()


def _check_address(path: str, *, utf8: bool, enhanced: str, who: str) -> str:
    if not path.isascii() and not utf8:
        # RFC 6531 section 3.5: without SMTPUTF8 in MAIL, non-ASCII addresses are refused.
        raise _err(553, "5.6.7", f"Non-ASCII {who} address needs SMTPUTF8")
    if parse_mailbox_untrusted(path, utf8=utf8) is None:
        raise _err(501, enhanced, f"Bad {who} address syntax")
    return path


def _parse_params(words: list[str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not _KEYWORD.fullmatch(key) or (eq and not _VALUE.fullmatch(value)):
            raise _err(501, "5.5.4", f"Bad parameter syntax: {word[:40]}")
        params[key.upper()] = value if eq else None
    return params


def _parse_mail(args: str) -> MailFrom:
    path, words = _split_path(args, "MAIL FROM", enhanced="5.1.7")
    params = _parse_params(words)
    size: int | None = None
    body: str | None = None
    smtputf8 = False
    auth: str | None = None
    for key, value in params.items():
        if key == "SIZE" and value is not None and value.isdigit() and len(value) <= 20:
            size = int(value)  # RFC 1870 section 6
        elif key == "BODY" and value is not None and value.upper() in ("7BIT", "8BITMIME"):
            body = value.upper()  # RFC 6152 section 2
        elif key == "SMTPUTF8" and value is None:
            smtputf8 = True  # RFC 6531 section 3.4
        elif key == "AUTH" and value is not None:
            auth = value  # RFC 4954 section 5: an xtext identity, or "<>"
        else:
            # RFC 5321 section 4.1.1.11.
            raise _err(555, "5.5.4", f"MAIL parameter {key} not recognized")
    if path:
        path = _check_address(path, utf8=smtputf8, enhanced="5.1.7", who="sender")
    return MailFrom(path, size=size, body=body, smtputf8=smtputf8, auth=auth)


def _parse_rcpt(args: str, utf8: bool) -> RcptTo:
    path, words = _split_path(args, "RCPT TO", enhanced="5.1.3")
    if words:
        raise _err(555, "5.5.4", f"RCPT parameter {_parse_params(words).popitem()[0]} not recognized")
    if path.lower() == "postmaster":
        # RFC 5321 section 4.1.1.3: "<Postmaster>" without a domain must be accepted.
        return RcptTo("postmaster")
    return RcptTo(_check_address(path, utf8=utf8, enhanced="5.1.3", who="recipient"))


def _no_args(event: Event, args: str, verb: str) -> Event:
    if args.strip():
        raise _err(501, "5.5.4", f"Syntax: {verb} takes no argument")
    return event


def parse_command_untrusted(line: bytes, *, utf8: bool = False) -> Event:
    """One command line (no CRLF) as an event.

    Args:
        line: the bytes of the line.
        utf8: the current transaction announced SMTPUTF8, so addresses may be UTF-8.

    Raises:
        RemoteProtocolError: with the reply that refuses the line.
    """
    if b"\0" in line:
        raise _err(500, "5.5.2", "NUL byte in command")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise _err(500, "5.5.2", "Command is not valid UTF-8") from None
    verb, _, args = text.partition(" ")
    verb = verb.upper()
    if verb in ("EHLO", "HELO"):
        domain = args.strip()
        if not domain or " " in domain:
            raise _err(501, "5.5.4", f"Syntax: {verb} hostname")
        return Hello(domain, extended=verb == "EHLO")
    if verb == "MAIL":
        if not args.upper().startswith("FROM:"):
            raise _err(501, "5.5.4", "Syntax: MAIL FROM:<address>")
        return _parse_mail(args[5:])
    if verb == "RCPT":
        if not args.upper().startswith("TO:"):
            raise _err(501, "5.5.4", "Syntax: RCPT TO:<address>")
        return _parse_rcpt(args[3:], utf8)
    simple: dict[str, Event] = {
        "DATA": Data(),
        "RSET": Rset(),
        "QUIT": Quit(),
        "STARTTLS": StartTls(),
    }
    if verb in simple:
        return _no_args(simple[verb], args, verb)
    if verb == "NOOP":
        return Noop()  # RFC 5321 section 4.1.1.9: a parameter is allowed and ignored
    if verb == "VRFY":
        if not args.strip():
            raise _err(501, "5.5.4", "Syntax: VRFY address")
        return Vrfy(args.strip())
    if verb == "HELP":
        return Help(args.strip())
    if verb == "AUTH":
        words = args.split()
        if not 1 <= len(words) <= 2:
            raise _err(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
        return Auth(words[0].upper(), words[1] if len(words) == 2 else None)
    if verb in ("EXPN", "TURN", "ETRN", "BDAT", "SEND", "SOML", "SAML"):
        raise _err(502, "5.5.1", f"{verb} not implemented")
    raise _err(500, "5.5.2", "Command unrecognized")


def format_command(event: Event) -> bytes:
    """The command line (with CRLF) that sends ``event``.

    Raises:
        LocalProtocolError: the event is not a command.
    """
    if isinstance(event, Hello):
        text = f"{'EHLO' if event.extended else 'HELO'} {event.domain}"
    elif isinstance(event, MailFrom):
        text = f"MAIL FROM:<{event.address}>"
        if event.size is not None:
            text += f" SIZE={event.size}"
        if event.body is not None:
            text += f" BODY={event.body}"
        if event.smtputf8:
            text += " SMTPUTF8"
        if event.auth is not None:
            text += f" AUTH={event.auth}"
    elif isinstance(event, RcptTo):
        text = f"RCPT TO:<{event.address}>"
    elif isinstance(event, Vrfy):
        text = f"VRFY {event.argument}"
    elif isinstance(event, Help):
        text = f"HELP {event.topic}".rstrip()
    elif isinstance(event, Auth):
        text = f"AUTH {event.mechanism}" + (f" {event.initial}" if event.initial is not None else "")
    else:
        words = {Data: "DATA", Rset: "RSET", Noop: "NOOP", Quit: "QUIT", StartTls: "STARTTLS"}
        if type(event) not in words:
            raise LocalProtocolError(f"{type(event).__name__} is not an SMTP command")
        text = words[type(event)]
    return text.encode("utf-8") + b"\r\n"
