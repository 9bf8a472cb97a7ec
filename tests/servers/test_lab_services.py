"""The lab's services for ``netlab up --lab``: pointing the suite at the lab, and the demo users."""

from __future__ import annotations

import stat
from pathlib import Path

import trio

from netlab.aio.shutdown import Lifetime, Service
from netlab.config import NetlabConfig, override
from netlab.lab import MAIL_DOMAINS, SERVERS, LabHost, LabInfo, record_in_lab
from netlab.store.users import UserDb
from servers.lab import changed_settings, describe_pointing, point_at_lab, pointed_at_lab
from servers.lab_mail import domain_config, ensure_demo_users

ROOT_HINTS = (LabHost(SERVERS[0].name, SERVERS[0].address),)


def config_in(tmp_path: Path) -> NetlabConfig:
    config = override(NetlabConfig(), "general", {"data_dir": str(tmp_path)})
    return override(config, "lab", {"enabled": True})


def test_pointing_without_a_running_lab_uses_the_configured_resolver(tmp_path: Path) -> None:
    config = override(config_in(tmp_path), "resolver", {"listen": "127.0.0.1:5399"})
    pointed = point_at_lab(config, None)
    assert pointed.proxy.resolver == "127.0.0.1:5399"
    assert pointed.smtp.resolver == "127.0.0.1:5399"
    assert pointed.smtp.relay_port == 25
    assert changed_settings(config, pointed, "proxy") == ['resolver = "127.0.0.1:5399"']
    assert changed_settings(config, pointed, "smtp") == ['resolver = "127.0.0.1:5399"']
    assert changed_settings(config, pointed, "rdt") == []


def test_pointing_at_a_running_lab_uses_what_it_recorded(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    info = LabInfo(port=40000, root_hints=ROOT_HINTS, mail_port=40000, resolver="127.0.0.1:41000")
    pointed = point_at_lab(config, info)
    assert (pointed.proxy.resolver, pointed.smtp.resolver) == ("127.0.0.1:41000", "127.0.0.1:41000")
    assert pointed.smtp.relay_port == 40000
    assert changed_settings(config, pointed, "smtp") == ['resolver = "127.0.0.1:41000"', "relay_port = 40000"]
    # Nothing else moves.
    assert pointed.resolver == config.resolver and pointed.pop3 == config.pop3


def test_without_the_suites_resolver_the_configured_ones_stay(tmp_path: Path) -> None:
    config = override(config_in(tmp_path), "resolver", {"enabled": False})
    config = override(config, "proxy", {"resolver": "127.0.0.1:53"})
    pointed = point_at_lab(config, LabInfo(port=53, root_hints=ROOT_HINTS, mail_port=25))
    assert pointed.proxy.resolver == "127.0.0.1:53"
    assert pointed.smtp.resolver == config.smtp.resolver


def test_config_show_notes_say_where_the_values_come_from(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    pointed, notes = describe_pointing(config)
    assert notes[0].startswith("no lab recorded in ")
    assert '[proxy] resolver = "127.0.0.1:5353"' in notes
    LabInfo(port=5300, root_hints=ROOT_HINTS, mail_port=5300, resolver="127.0.0.1:9").save(tmp_path / "lab")
    pointed, notes = describe_pointing(config)
    assert notes[0].startswith("pointed at the lab running on port 5300")
    assert notes[1:] == [
        '[proxy] resolver = "127.0.0.1:9"',
        '[smtp] resolver = "127.0.0.1:9"',
        "[smtp] relay_port = 5300",
    ]
    assert pointed.smtp.relay_port == 5300


async def test_a_pointed_service_is_built_when_it_starts_from_what_the_lab_recorded(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    LabInfo(port=53, root_hints=ROOT_HINTS).save(tmp_path / "lab")
    built: list[NetlabConfig] = []

    def factory(cfg: NetlabConfig) -> Service | None:
        built.append(cfg)

        async def serve(lifetime: Lifetime, *, task_status: trio.TaskStatus[list[str]]) -> None:
            task_status.started([f"relay port {cfg.smtp.relay_port}"])
            await lifetime.stopping.wait()

        return Service("smtp", serve)

    service = pointed_at_lab(factory)(config)
    assert service is not None and service.name == "smtp"
    # Between building and starting, the services before this one record where they are.
    record_in_lab(tmp_path / "lab", resolver="127.0.0.1:7777", mail_port=2626)
    lifetime = Lifetime()
    async with trio.open_nursery() as nursery:
        lines = await nursery.start(service.serve, lifetime)
        lifetime.stop()
    assert lines == [
        "relay port 2626",
        'pointed at the lab: resolver = "127.0.0.1:7777"',
        "pointed at the lab: relay_port = 2626",
    ]
    assert built[-1].smtp.relay_port == 2626
    assert pointed_at_lab(lambda _cfg: None)(config) is None


def test_lab_records_round_trip_with_the_hosts_ports(tmp_path: Path) -> None:
    info = LabInfo(port=53, root_hints=ROOT_HINTS, web_port=80, mail_port=25, pop3_port=110, resolver="x:1")
    info.save(tmp_path)
    assert LabInfo.load(tmp_path) == info
    assert info.web_url == "http://www.shop.test/"
    high = LabInfo(port=40000, root_hints=ROOT_HINTS, web_port=40000)
    assert high.web_url == "http://www.shop.test:40000/"
    assert (high.host_port(80), info.host_port(80)) == (40000, 80)
    assert LabInfo(port=53, root_hints=ROOT_HINTS).web_url is None


def test_demo_users_are_made_once_hashed_with_their_passwords_kept_private(tmp_path: Path) -> None:
    store, passwords = tmp_path / "alpha.test", tmp_path / "passwords"
    made = ensure_demo_users(store, ["alice@alpha.test"], passwords)
    assert set(made) == {"alice@alpha.test"}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    users = UserDb(store / "users")
    assert users.verify("alice@alpha.test", made["alice@alpha.test"]) is not None
    assert made["alice@alpha.test"] not in (store / "users").read_text()
    again = ensure_demo_users(store, ["alice@alpha.test"], passwords)
    assert again == made  # not made anew on the next start
    both = ensure_demo_users(tmp_path / "beta.test", ["bob@beta.test"], passwords)
    assert set(both) == {"alice@alpha.test", "bob@beta.test"}


def test_each_lab_domain_gets_its_own_server_configuration(tmp_path: Path) -> None:
    base = override(config_in(tmp_path), "smtp", {"trusted_networks": ["127.0.0.0/8"], "tls_cert": "x.pem"})
    alpha = MAIL_DOMAINS[0]
    cfg = domain_config(base, alpha, tmp_path / "alpha.test", "127.0.0.1:5353", 2525)
    assert cfg.smtp.domains == ("alpha.test",)
    assert cfg.smtp.hostname == "mx1.alpha.test"
    assert (cfg.smtp.resolver, cfg.smtp.relay_port) == ("127.0.0.1:5353", 2525)
    assert cfg.smtp.trusted_networks == ()  # never an open relay
    assert (cfg.smtp.tls_cert, cfg.pop3.tls_cert) == ("", "")
    assert cfg.smtp.store == cfg.pop3.store == str(tmp_path / "alpha.test")
