"""The CLI as a person meets it: named actors, one line and a documented code for every failure, options
that say what they take, one spelling of dates and academic years."""

import contextlib
import io
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import structlog
import typer
from aiokafka.errors import KafkaConnectionError
from sais_delivery.domain.errors import NothingToDeliverError, SharingSuspendedError, UncertainDeliveryError
from sais_shared import notices, operator
from sais_shared.cli_options import parse_academic_year, parse_date, parse_when
from sais_shared.errors import MissingKeyEncryptionKeyError
from sais_shared.exits import Exit
from sais_shared.protocol import ProtocolError, ProtocolRefusalError

from sais.cli import command, main
from sais.failures import classify

REPO = Path(__file__).resolve().parents[2]


def _leaves(cmd, path=()):
    subs = getattr(cmd, "commands", None)
    if not subs:
        yield path
        return
    for name, sub in subs.items():
        yield from _leaves(sub, (*path, name))


def _help(path) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        command().main([*path, "--help"], prog_name="sais", standalone_mode=False)
    return buf.getvalue()


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def test_every_option_names_what_it_takes(wide):
    placeholders = re.compile(r"<(str|int|bool|float|path|file|directory|uuid|UUID|int range|float range|datetime)>")
    found = {" ".join(p): placeholders.findall(_help(p)) for p in _leaves(command(everything=True))}
    assert len(found) > 30
    assert {c: f for c, f in found.items() if f} == {}


def test_every_json_flag_says_what_it_does(wide):
    bare = []
    for path in _leaves(command(everything=True)):
        for line in _help(path).splitlines():
            if "--json" in line and len(line.split("--json", 1)[1].strip(" │")) < 10:
                bare.append(" ".join(path))
    assert bare == []


def test_an_actor_is_required_and_checked(monkeypatch):
    monkeypatch.delenv("SAIS_ACTOR", raising=False)
    operator.set_actor(None)
    with pytest.raises(operator.ActorRequiredError, match="--actor"):
        operator.actor()
    monkeypatch.setenv("SAIS_ACTOR", "  Jo Bloggs ")
    assert operator.actor() == "Jo Bloggs"
    operator.set_actor("Sam Patel (IG lead)")
    assert operator.actor() == "Sam Patel (IG lead)"  # the command line wins over the environment
    for bad in ("   ", "Jo\nBloggs", "x" * 201, "Jo\x1b[2JBloggs"):
        with pytest.raises(operator.ActorInvalidError):
            operator.set_actor(bad)
    operator.set_actor(None)


@pytest.mark.parametrize(
    "exc, code",
    [
        (operator.ActorRequiredError("who"), Exit.BAD_INPUT),
        (ProtocolError("bad field"), Exit.BAD_INPUT),
        (ProtocolRefusalError("source not covered"), Exit.REFUSED),
        (SharingSuspendedError("suspended"), Exit.REFUSED),
        (UncertainDeliveryError("maybe"), Exit.UNCERTAIN),
        (NothingToDeliverError("none"), Exit.NOTHING),
        (MissingKeyEncryptionKeyError("no KEK"), Exit.PERMANENT),
        (asyncpg.InvalidPasswordError("password authentication failed"), Exit.PERMANENT),
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"), Exit.TRANSIENT),
        (KafkaConnectionError("no broker"), Exit.TRANSIENT),
        (TimeoutError(), Exit.TRANSIENT),
    ],
)
def test_each_failure_has_its_documented_code(exc, code):
    got, line = classify(exc)
    assert got == code
    assert "\n" not in line and line


def test_a_defect_shows_where_but_not_what():
    try:
        raise ValueError("Amelia Smith 2010-02-03")  # a message that could carry personal data
    except ValueError as exc:
        code, line = classify(exc)
    assert code == Exit.INTERNAL
    assert "ValueError" in line and "test_cli_surface.py" in line
    assert "Amelia" not in line and "2010" not in line


def test_academic_year_has_one_spelling():
    assert parse_academic_year("2017/18") == "2017/18"
    assert parse_academic_year("2099/00") == "2099/00"
    for bad in ("2017-18", "2017/19", "17/18", "2017/2018", "2017"):
        with pytest.raises(typer.BadParameter):
            parse_academic_year(bad)
    with pytest.raises(typer.BadParameter, match="did you mean 2017/18"):
        parse_academic_year("2017-18")


def test_dates_and_times_are_read_one_way():
    assert parse_date("2017-10-11").isoformat() == "2017-10-11"
    with pytest.raises(typer.BadParameter) as refused:
        parse_date("11/10/2017")
    assert "11/10" not in str(refused.value)  # never echoed: it could be a date of birth
    with pytest.raises(typer.BadParameter):
        parse_when("yesterday")
    summer, winter = parse_when("2017-07-10T09:30"), parse_when("2017-12-04T09:30")
    assert summer.utcoffset() == timedelta(hours=1) and winter.utcoffset() == timedelta(0)  # Europe/London
    assert parse_when("2017-07-10T09:30+00:00").utcoffset() == timedelta(0)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def sais(monkeypatch, capsys):
    """``sais ARGS`` through its console-script entry point, in this process, with no SAIS_* setting but
    the given ones and a database nobody listens on."""

    def run(*args: str, **env: str) -> Ran:
        saved_structlog, root = structlog.get_config(), logging.getLogger()
        saved_logging = (root.handlers[:], root.level)
        with monkeypatch.context() as m:
            for k in [k for k in os.environ if k.startswith("SAIS_")]:
                m.delenv(k)
            for k, v in {"SAIS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "COLUMNS": "200", **env}.items():
                m.setenv(k, v)
            m.chdir(REPO)
            m.setattr(sys, "argv", ["sais", *args])
            try:
                with pytest.raises(SystemExit) as ended:
                    main()
            finally:  # the command configured logging onto this test's captured stderr: put it back
                structlog.configure(**saved_structlog)
                root.handlers[:], _ = saved_logging
                root.setLevel(saved_logging[1])
                notices.set_sink(None)
        out = capsys.readouterr()
        return Ran(ended.value.code or 0, out.out, out.err)

    return run


@pytest.mark.parametrize(
    "args",
    [
        ("delivery", "suspend", "--reason", "INC-1"),
        ("delivery", "resume", "--reason", "INC-1 closed"),
        ("delivery", "resolve", "00000000-0000-0000-0000-000000000001", "--sent"),
        ("delivery", "send", "--window", "july", "--academic-year", "2017/18"),
        ("retention", "run"),
        ("retention", "purge", "--party", "cwpt", "--confirm", "cwpt"),
        ("protocol", "load", "shared/src/sais_shared/protocols/warwickshire-cwpt-v0.3.yaml"),
        ("schools", "load", "data/reference/gias-establishments-sample.csv"),
        ("ingest", "file", "data/samples/may-census-2017.csv", "--source", "summer-census", "--reference-date",
         "2017-05-18"),
        ("db", "migrate"),
        ("breach", "report", "--what", "laptop lost", "--discovered-at", "2017-07-10T09:00", "--by", "Jo"),
    ],
)  # fmt: skip
def test_a_command_that_changes_something_names_its_person_before_it_connects(args, sais):
    # nothing listens on port 1: had the command connected first, it would fail as "transient" (5)
    done = sais(*args)
    assert done.returncode == Exit.BAD_INPUT, done.stderr
    assert "--actor" in done.stderr and "Traceback" not in done.stderr


def test_bad_input_and_unreachable_servers_are_one_line_each(sais):
    bad_date = sais("--actor", "Jo", "retention", "run", "--now", "11/10/2017")
    assert bad_date.returncode == 2 and "YYYY-MM-DD" in bad_date.stderr and "Traceback" not in bad_date.stderr
    bad_time = sais("--actor", "Jo", "breach", "report", "--what", "x", "--discovered-at", "yesterday", "--by", "J")
    assert bad_time.returncode == 2 and "Traceback" not in bad_time.stderr
    bad_year = sais("eligibility", "rules", "--academic-year", "2017-18")
    assert bad_year.returncode == 2 and "2017/18" in bad_year.stderr
    no_kek = sais("protocol", "show")
    assert no_kek.returncode == Exit.PERMANENT, no_kek.stderr
    assert "Traceback" not in no_kek.stderr and len(no_kek.stderr.strip().splitlines()) == 1
    down = sais("protocol", "show", SAIS_KEK="A" * 43 + "=", SAIS_DEV_MODE="true")
    assert down.returncode == Exit.TRANSIENT, down.stderr
    assert "Traceback" not in down.stderr and len(down.stderr.strip().splitlines()) == 1


def test_with_json_a_failure_is_json_too(sais):
    done = sais("protocol", "show", "--json")
    assert done.returncode == Exit.PERMANENT
    answer = json.loads(done.stdout)
    assert answer["exit_code"] == Exit.PERMANENT and answer["error"] == "permanent" and answer["message"]


def test_the_database_url_can_come_from_a_secret_file(tmp_path, monkeypatch):
    from sais_shared.settings import CommonSettings

    url = tmp_path / "database-url"
    url.write_text("postgresql://admin:s3cret@db.example.invalid:5432/sais?sslmode=verify-full\n")
    monkeypatch.setenv("SAIS_DATABASE_URL", "postgresql://ignored@127.0.0.1/x")
    monkeypatch.setenv("SAIS_DATABASE_URL_FILE", str(url))
    assert CommonSettings().database_url == "postgresql://admin:s3cret@db.example.invalid:5432/sais?sslmode=verify-full"
    url.write_text("")
    with pytest.raises(Exception, match="SAIS_DATABASE_URL_FILE"):
        CommonSettings()


def test_the_settings_table_is_generated_from_the_code_and_says_what_each_means():
    from sais.settings_doc import DOC, render, rows

    assert (REPO / DOC).read_text() == render(), "run `sais docs settings`"
    table = rows()
    assert len(table) > 40 and len({var for var, *_ in table}) == len(table)
    assert [var for var, _, _, meaning in table if not meaning.strip()] == []
    assert {"SAIS_DATABASE_URL_FILE", "SAIS_DELIVERY_RECIPIENT", "SAIS_ACTOR"} <= {var for var, *_ in table}


def test_every_service_joins_the_group_its_acls_allow_and_kafka_lag_watches_whatever_the_topic_prefix(monkeypatch):
    """The services defaulted to sais-<service> while their ACLs allow only <prefix>-<service>…: with another
    prefix a service could not join its group. Now one rule names the group, for the settings, the ACLs and
    `sais kafka lag`."""
    from sais_delivery.config import DeliverySettings
    from sais_eligibility.config import EligibilitySettings
    from sais_ingest.config import IngestSettings
    from sais_retention.config import RetentionSettings
    from sais_shared.kafka_access import Operation, Resource, bindings

    from sais.admin_cli import service_group

    monkeypatch.setenv("SAIS_TOPIC_PREFIX", "county42")
    settings = {"ingest": IngestSettings, "eligibility": EligibilitySettings, "delivery": DeliverySettings,
                "retention": RetentionSettings}  # fmt: skip
    acls = bindings("county42")
    for svc, cls in settings.items():
        monkeypatch.delenv(f"SAIS_{svc.upper()}_GROUP_ID", raising=False)
        group = getattr(cls(), f"{svc}_group_id")
        assert group == service_group(svc) == f"county42-{svc}"
        assert any(
            b.resource == Resource.GROUP and b.operation == Operation.READ and b.principal == f"User:sais-{svc}"
            and group.startswith(b.name)
            for b in acls
        ), svc  # fmt: skip
    monkeypatch.setenv("SAIS_DELIVERY_GROUP_ID", "my-delivery")
    assert service_group("delivery") == "my-delivery" == DeliverySettings().delivery_group_id


HEAVY = ("faststream", "aiokafka", "asyncpg", "openpyxl", "pydantic", "cryptography", "sais_ingest", "sais_eligibility",
         "sais_delivery", "sais_retention")  # fmt: skip


def _imported_by(*argv: str) -> tuple[str, list[str]]:
    """Run ``sais ARGV`` in a fresh interpreter: what it printed, and which heavy packages it imported."""
    import subprocess

    probe = (
        "import sys\nfrom sais.cli import main\nsys.argv = ['sais', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    return done.stdout, eval(done.stderr.strip().splitlines()[-1])


def test_help_and_a_simple_command_import_no_service_and_no_server_client():
    """`sais --help` lists every group from one-liners; a command loads only what it needs. (The time this
    saves is measured by bench/cli_startup.py, not here.)"""
    from sais.cli import COMMANDS

    out, heavy = _imported_by("--help")
    assert heavy == [], heavy
    assert all(name in out for name in COMMANDS)
    out, heavy = _imported_by("keys", "new-kek")
    assert len(base64_decoded := __import__("base64").b64decode(out.strip())) == 32 and base64_decoded
    assert not set(heavy) & {"faststream", "aiokafka", "openpyxl", "sais_ingest", "sais_delivery"}, heavy


def test_each_group_listed_without_loading_it_says_what_its_own_help_says():
    from sais.cli import COMMANDS, load

    for name, (_, line) in COMMANDS.items():
        own = (load(name).help or "").strip().split("\n\n")[0].replace("\n", " ")
        assert line == own, name


def test_a_group_loaded_on_demand_runs_as_before(wide):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        command().main(["db", "--help"], prog_name="sais", standalone_mode=False)
    assert "migrate" in buf.getvalue()  # a one-command group stays a group: `sais db migrate`


def test_the_root_reads_the_log_settings_with_the_settings_defaults():
    from sais_shared.settings import CommonSettings

    from sais.cli import LOG_DEFAULTS

    assert {k: CommonSettings.model_fields[k].default for k in LOG_DEFAULTS} == LOG_DEFAULTS


def test_a_time_is_shown_in_europe_london_to_the_minute_with_its_zone():
    """Issue 30: times were microsecond UTC next to "sent … UTC" in the same block, though the README says
    Europe/London."""
    from datetime import UTC, datetime

    from sais_shared.cli_options import local_time

    assert local_time(datetime(2017, 7, 10, 19, 34, 55, 933419, tzinfo=UTC)) == "2017-07-10 20:34 BST"
    assert local_time(datetime(2017, 12, 4, 9, 5, tzinfo=UTC)) == "2017-12-04 09:05 GMT"
    assert local_time(datetime(2017, 12, 4, 9, 5)) == "2017-12-04 09:05 GMT"  # naive: UTC, as stored
    assert local_time(None) == "—" and local_time(None, "not yet") == "not yet"
    assert local_time("2017-07-10T19:34:55.933419+00:00") == "2017-07-10 20:34 BST"  # as a JSON column gives it


def test_ingest_file_help_lists_formats_columns_and_sources_whole_at_80_columns():
    import subprocess

    from sais_ingest.domain.headers import REQUIRED
    from sais_shared.events import SOURCES

    sais = str(Path(sys.executable).with_name("sais"))
    r = subprocess.run(
        [sais, "ingest", "file", "--help"], env={**os.environ, "COLUMNS": "80"}, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(x) <= 80 for x in lines)
    words = {w.strip("(),;.'…:") for x in lines for w in x.split()}
    assert set(SOURCES) <= words, "a source's name is cut"  # each on a line of its own, with its meaning
    assert set(REQUIRED) <= words and {"CSV", "xlsx", "Common", "Transfer"} <= words
    assert "numbered as in the spreadsheet" in " ".join(" ".join(lines).split())
