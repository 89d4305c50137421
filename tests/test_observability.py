"""Metrics, health, readiness and the access log, as an operator sees them."""

from __future__ import annotations

import datetime
import io
import json
import re
import shutil
import socket
import sqlite3
import time
import urllib.error
import urllib.request

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.logger import Logger, LogPublisher

from ocireg import version
from ocireg.api.observe import RequestRecord
from ocireg.config import Config
from ocireg.logoutput import LogOutput
from ocireg.metrics import OTHER, RegistryMetrics
from ocireg.requestlog import RequestLog
from ocireg.service import RegistryService
from tests.api_helpers import make_image, push_image
from tests.auth_helpers import GROUPS, RULES, anonymous, user, write_htpasswd
from tests.conftest import InProcessServer, start_from_thread
from tests.support import RegistryProcess, free_port, in_thread, twistd_command, wait_for

MANIFEST_ROUTE = "/v2/<path:name>/manifests/<reference>"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def processes():
    started: list[RegistryProcess] = []
    yield started
    for server in started:
        server.stop()


def _start(tmp_path, servers: list[InProcessServer], **settings) -> InProcessServer:
    """ocireg with `settings`, in the reactor: called from the test's thread (in_thread)."""
    return start_from_thread(servers, Config(
        listen=("tcp:0:interface=127.0.0.1",), data_dir=str(tmp_path / "data"), **settings
    ))


# Metrics


@pytest_twisted.ensureDeferred
async def test_metrics_after_a_push_count_it_by_route_template_and_repository(server):
    image = make_image(layers=2)
    await push_image(server, "team/app", image, "v1")
    pulled = await server.request("GET", f"/v2/team/app/manifests/{image.digest}",
                                  headers={"Accept": image.media_type})
    assert await pulled.content() == image.body

    response = await server.request("GET", "/metrics")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type")[0].startswith("text/plain")
    samples = _samples((await response.content()).decode())

    assert _value(samples, "ocireg_http_requests_total",
                  route=MANIFEST_ROUTE, method="PUT", status="201") == 1
    assert _value(samples, "ocireg_http_requests_total",
                  route="/v2/<path:name>/blobs/uploads/", method="POST", status="201") == 3
    assert _value(samples, "ocireg_pushes_total", repository="team/app") == 1
    assert _value(samples, "ocireg_pulls_total", repository="team/app") == 1
    assert _value(samples, "ocireg_http_request_duration_seconds_count",
                  route=MANIFEST_ROUTE, method="PUT") == 1
    pushed = sum(len(b) for b in image.blobs.values()) + len(image.body)
    assert _value(samples, "ocireg_http_received_bytes_total") >= pushed
    assert _value(samples, "ocireg_http_sent_bytes_total") >= len(image.body)
    assert _value(samples, "ocireg_uploads_in_progress") == 0
    assert _value(samples, "ocireg_db_transactions_total", outcome="committed") > 0
    # Routes are templates: no label carries a raw path or a digest.
    routes = {dict(labels).get("route") for (_, labels) in samples} - {None}
    assert all("team/app" not in r and "sha256:" not in r for r in routes), routes


#: Metric names of the libraries' own collectors, beside ocireg's.
_FOREIGN_PREFIXES = ("process_", "python_")
#: Units in their base forms, as Prometheus names them; the others must not appear.
_NOT_BASE_UNITS = re.compile(r"(^|_)(milliseconds|ms|microseconds|kilobytes|kib|mib|minutes)(_|$)")


@pytest_twisted.ensureDeferred
async def test_metrics_follow_prometheus_naming_and_types(server):
    await push_image(server, "team/app", make_image(), "v1")
    await server.request("POST", "/api/v1/gc")
    response = await server.request("GET", "/metrics")
    text = (await response.content()).decode()
    families = list(text_string_to_metric_families(text))
    types = {f.name: f.type for f in families}
    names = [s.name for f in families for s in f.samples]

    assert not [n for n in names if n.endswith("_created")]
    for family in families:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name), family.name
        assert family.name.startswith(("ocireg_", *_FOREIGN_PREFIXES)), family.name
        assert not _NOT_BASE_UNITS.search(family.name), family.name
        assert family.documentation, family.name
        for sample in family.samples:
            if family.type == "counter":
                # The text format names a counter's samples NAME_total.
                assert sample.name == family.name + "_total", (family.type, sample.name)
            else:
                assert not sample.name.endswith("_total"), (family.type, sample.name)
    # Counts since start are counters: the parser shows them without their _total.
    for counted in ("ocireg_gc_runs", "ocireg_gc_removed_items", "ocireg_gc_freed_bytes",
                    "ocireg_staging_promoted", "ocireg_staging_discarded",
                    "ocireg_uploads_purged", "ocireg_connections_refused",
                    "ocireg_header_timeouts", "ocireg_requests_refused_before_body",
                    "ocireg_http_requests", "ocireg_pushes"):
        assert types.get(counted) == "counter", (counted, types.get(counted))
    assert "# TYPE ocireg_gc_runs_total counter\nocireg_gc_runs_total 1.0\n" in text
    # The process as prometheus_client's own collectors measure it.
    for measured in ("process_resident_memory_bytes", "process_open_fds",
                     "process_start_time_seconds", "python_info"):
        assert types.get(measured) == "gauge", measured
    assert types.get("process_cpu_seconds") == "counter"
    samples = _samples(text)
    build = [labels for (name, labels) in samples if name == "ocireg_build_info"]
    assert len(build) == 1
    assert dict(build[0])["version"] == version()
    assert set(dict(build[0])) == {"version", "python", "twisted"}


@pytest_twisted.async_yield_fixture
async def auth_server(tmp_path):
    config = Config(
        listen=("tcp:0:interface=127.0.0.1",), data_dir=str(tmp_path / "data"),
        auth_htpasswd=str(write_htpasswd(tmp_path / "htpasswd")), auth_rules=RULES,
        auth_groups=GROUPS,
    )
    service = RegistryService(config, reactor)
    service.startService()
    ports = await service.ready
    try:
        yield InProcessServer(service, ports[0])
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_with_auth_on_metrics_on_the_api_port_are_for_admins_only(auth_server):
    await push_image(user(auth_server, "alice"), "secret/plans", make_image(layers=1), "v1")

    response = await anonymous(auth_server).request("GET", "/metrics")
    body = await response.content()
    assert response.code == 401, body
    assert json.loads(body)["error"]["code"] == "UNAUTHORIZED"
    assert response.headers.getRawHeaders("WWW-Authenticate")
    assert b"secret/plans" not in body

    response = await user(auth_server, "alice").request("GET", "/metrics")
    body = await response.content()
    assert response.code == 403, body
    assert b"secret/plans" not in body

    response = await user(auth_server, "root").request("GET", "/metrics")
    samples = _samples((await response.content()).decode())
    assert response.code == 200
    assert _value(samples, "ocireg_pushes_total", repository="secret/plans") == 1

    for probe in ("/healthz", "/readyz"):
        response = await anonymous(auth_server).request("GET", probe)
        assert response.code == 200, (probe, await response.content())
        await response.content()


def _record(repository: str, method: str = "PUT", reference: str = "v1") -> RequestRecord:
    return RequestRecord(
        method=method, path=f"/v2/{repository}/manifests/{reference}", route=MANIFEST_ROUTE,
        status=201 if method == "PUT" else 200, received=10, sent=0, duration=0.01,
        client="127.0.0.1", user=None, repository=repository, reference=reference,
        completed=True, upload=False,
    )


def test_repositories_past_the_cap_are_counted_as_other():
    metrics = RegistryMetrics(CollectorRegistry(), repository_cap=2)
    for name in ["a", "b", "c", "d", "a"]:
        metrics.request_done(_record(name))
    samples = _samples(metrics.render().decode())
    assert _value(samples, "ocireg_pushes_total", repository="a") == 2
    assert _value(samples, "ocireg_pushes_total", repository="b") == 1
    assert _value(samples, "ocireg_pushes_total", repository=OTHER) == 2
    assert _value(samples, "ocireg_pushes_total", repository="c") is None


def test_unknown_methods_are_counted_as_other():
    metrics = RegistryMetrics(CollectorRegistry())
    for method in ["BREW", "WHEN", "PUT"]:
        metrics.request_done(_record("a", method=method))
    samples = _samples(metrics.render().decode())
    methods = {dict(labels).get("method") for (_, labels) in samples} - {None}
    assert methods == {"PUT", OTHER}


def test_a_push_by_digest_is_no_push_and_a_manifest_head_no_pull():
    metrics = RegistryMetrics(CollectorRegistry())
    metrics.request_done(_record("a", reference="sha256:" + "0" * 64))
    metrics.request_done(_record("a", method="HEAD"))
    samples = _samples(metrics.render().decode())
    assert _value(samples, "ocireg_pushes_total", repository="a") is None
    assert _value(samples, "ocireg_pulls_total", repository="a") is None


@in_thread
def test_uploads_in_progress_counts_a_body_while_it_streams(tmp_path, servers):
    server = _start(tmp_path, servers)
    request = urllib.request.Request(server.url + "/v2/team/app/blobs/uploads/", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        location = response.headers["Location"]

    def in_progress() -> float:
        samples = _samples(_get(server.url + "/metrics")[1].decode())
        return _value(samples, "ocireg_uploads_in_progress")

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\n"
            "Content-Length: 1000\r\n\r\n".encode() + b"x" * 500
        )
        wait_for(lambda: in_progress() == 1, "the upload to count")
        sock.sendall(b"x" * 500)
        assert b" 202 " in sock.recv(4096).split(b"\r\n")[0] + b" "
    wait_for(lambda: in_progress() == 0, "the upload to end")


# Health and readiness


@in_thread
def test_readyz_is_unready_while_the_metadata_database_is_locked(tmp_path, servers):
    server = _start(tmp_path, servers)
    assert _get(server.url + "/readyz")[0] == 200

    # Another process holding the write lock: ocireg's transactions cannot begin.
    blocker = sqlite3.connect(server.data_dir / "metadata.sqlite3", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        status, body = _get(server.url + "/readyz")
        assert status == 503, body
        checks = json.loads(body)["checks"]
        # "no answer within 5 s", or the database's own "locked" error,
        # depending on which comes first: either way, not ok.
        assert checks["metadata"] != "ok", checks
        assert checks["blobs"] == "ok"
        assert _get(server.url + "/healthz")[0] == 200
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(lambda: _get(server.url + "/readyz")[0] == 200, "readiness to come back")


@in_thread
def test_readyz_is_unready_when_the_blob_store_directory_is_gone(tmp_path, servers):
    server = _start(tmp_path, servers)
    shutil.rmtree(server.data_dir / "blobs")
    status, body = _get(server.url + "/readyz")
    assert status == 503
    assert "blobs" in json.loads(body)["checks"]["blobs"]
    assert json.loads(body)["checks"]["metadata"] == "ok"


@in_thread
def test_admin_listen_serves_health_and_metrics_which_leave_the_main_port(tmp_path, servers):
    admin = free_port()
    server = _start(tmp_path, servers, admin_listen=(f"tcp:{admin}:interface=127.0.0.1",))
    admin_url = f"http://127.0.0.1:{admin}"
    assert _get(admin_url + "/healthz")[0] == 200
    assert _get(admin_url + "/readyz")[0] == 200
    status, body = _get(admin_url + "/metrics")
    assert status == 200 and b"ocireg_http_requests_total" in body
    assert _get(admin_url + "/v2/")[0] == 404
    assert _get(server.url + "/metrics")[0] == 404
    assert _get(server.url + "/readyz")[0] == 200


# The access log


def test_json_log_format_writes_each_request_as_one_object_with_its_fields(tmp_path, processes):
    server = RegistryProcess(tmp_path / "data", command=twistd_command).start(
        "--log-format", "json"
    )
    processes.append(server)
    assert _get(server.url + "/v2/team/app/tags/list")[0] == 404

    def access_events():
        lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
        return [e for e in lines if e.get("namespace") == "ocireg.access"
                and e.get("path") == "/v2/team/app/tags/list"]

    [event] = wait_for(access_events, "the request's log event")
    assert event["method"] == "GET"
    assert event["status"] == 404
    assert event["route"] == "/v2/<path:name>/tags/list"
    assert event["repository"] == "team/app"
    assert event["user"] == "-"
    assert isinstance(event["duration_ms"], float)
    assert event["level"] == "info"
    assert '"GET /v2/team/app/tags/list HTTP/1.1" 404' in event["message"]


def test_the_access_log_follows_the_log_level_and_its_reload():
    stream = io.StringIO()
    output = LogOutput("text", "warn", stream)
    log = Logger(namespace="ocireg.access", observer=LogPublisher(output.observer))
    access = RequestLog(log, written=output.writes)
    access.request_done(_record("team/app", method="GET"))
    assert stream.getvalue() == ""
    output.set_level("info")
    access.request_done(_record("team/app", method="GET"))
    assert '"GET /v2/team/app/manifests/v1 HTTP/1.1" 200' in stream.getvalue()


def test_start_up_logs_the_effective_settings(tmp_path, processes):
    config = tmp_path / "ocireg.toml"
    config.write_text('log_format = "text"\n')
    server = RegistryProcess(tmp_path / "data", command=twistd_command).start(
        "--config", str(config)
    )
    processes.append(server)
    assert '"shutdown_timeout": 30' in server.log()


def test_masked_settings_hide_a_database_password():
    from ocireg.config import Config, masked

    shown = masked(Config(database="postgresql://reg:s3cret@db.example:5432/ocireg"))
    assert shown["database"] == "postgresql://reg:********@db.example:5432/ocireg"
    assert "s3cret" not in json.dumps(shown)


#: A Combined Log Format line, after twisted's time and [namespace#level] prefix.
_COMBINED = re.compile(
    r'^\S+ \[ocireg\.access#info\] (?P<client>\S+) - (?P<user>\S+) '
    r'\[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}|-) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"'
    r" (?P<rest>.*)$"
)


def _get_with(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_text_access_log_is_combined_log_format_and_probes_are_at_debug(tmp_path, processes):
    server = RegistryProcess(tmp_path / "data", command=twistd_command).start()
    processes.append(server)
    for probe in ("/healthz", "/readyz"):
        assert _get(server.url + probe)[0] == 200
    agent = 'skopeo/1.9 "quoted"'
    assert _get_with(server.url + "/v2/team/app/tags/list",
                     {"User-Agent": agent, "Referer": "http://example.test/x"}) == 404

    def access_lines():
        return [line for line in server.log().splitlines() if "[ocireg.access#" in line]

    lines = wait_for(lambda: [x for x in access_lines() if "/tags/list" in x],
                     "the request's access log line", log=server.log)
    [line] = lines
    found = _COMBINED.match(line)
    assert found, line
    assert found["client"] == "127.0.0.1" and found["user"] == "-"
    assert found["request"] == "GET /v2/team/app/tags/list HTTP/1.1"
    assert found["status"] == "404" and int(found["size"]) > 0
    assert found["referer"] == "http://example.test/x"
    assert found["agent"] == 'skopeo/1.9 \\"quoted\\"'
    assert "repository=team/app" in found["rest"]
    stamp = datetime.datetime.strptime(found["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs(stamp.timestamp() - time.time()) < 60
    # The probes that succeeded were logged below the default level (info).
    assert not [x for x in access_lines() if "/healthz" in x or "/readyz" in x]


def test_probes_are_logged_at_debug_and_failed_probes_at_info():
    stream = io.StringIO()
    output = LogOutput("text", "info", stream)
    log = Logger(namespace="ocireg.access", observer=LogPublisher(output.observer))
    access = RequestLog(log, written=output.writes)

    def probe(route: str, status: int) -> RequestRecord:
        return RequestRecord(
            method="GET", path=route, route=route, status=status, received=0, sent=2,
            duration=0.001, client="127.0.0.1", user=None, repository=None, reference=None,
            completed=True, upload=False,
        )

    access.request_done(probe("/healthz", 200))
    access.request_done(probe("/readyz", 200))
    assert stream.getvalue() == ""
    access.request_done(probe("/readyz", 503))
    assert '"GET /readyz HTTP/1.1" 503' in stream.getvalue()
    output.set_level("debug")
    access.request_done(probe("/healthz", 200))
    assert "[ocireg.access#debug]" in stream.getvalue()


def test_hostile_paths_and_agents_cannot_break_the_line():
    stream = io.StringIO()
    output = LogOutput("text", "info", stream)
    log = Logger(namespace="ocireg.access", observer=LogPublisher(output.observer))
    RequestLog(log, written=output.writes).request_done(RequestRecord(
        method="GET", path='/v2/a"b\nc', route=None, status=404, received=0, sent=0,
        duration=0.001, client="127.0.0.1", user="a b", repository=None, reference=None,
        completed=True, upload=False, user_agent="x\r\ny\u00e9",
    ))
    [line] = stream.getvalue().splitlines()
    assert '"GET /v2/a\\"b\\x0ac HTTP/1.1" 404 - "-" "x\\x0d\\x0ay\\xc3\\xa9"' in line
    assert " - a\\x20b [" in line


def test_json_log_has_the_user_agent_and_the_start_up_settings_as_an_object(
    tmp_path, processes
):
    server = RegistryProcess(tmp_path / "data", command=twistd_command).start(
        "--log-format", "json"
    )
    processes.append(server)
    assert _get_with(server.url + "/v2/_catalog", {"User-Agent": "containers/5.24"}) == 200

    def events():
        return [json.loads(line) for line in server.log().splitlines() if line.strip()]

    [access] = wait_for(
        lambda: [e for e in events() if e.get("namespace") == "ocireg.access"
                 and e.get("path") == "/v2/_catalog"], "the request's log event")
    assert access["user_agent"] == "containers/5.24"
    assert access["protocol"] == "HTTP/1.1" and access["referer"] is None
    assert not [k for k in access if k.startswith("_")], access
    [starting] = [e for e in events() if e["message"].startswith("ocireg starting")]
    assert isinstance(starting["settings"], dict), starting
    assert starting["settings"]["shutdown_timeout"] == 30
    assert json.loads(starting["message"].split(" with settings ", 1)[1]) == starting["settings"]
