"""image_url resolution (every form, escapes refused) and http(s) fetching against a real local server."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
from .jsonl_testdata import write_image, write_jsonl

from visionml.data.reader import read_dataset
from visionml.data.resolve import cache_path, fetch, parse_datastores, resolve_image_url
from visionml.errors import UsageError

AZ = "azureml://subscriptions/sub-1/resourcegroups/rg/workspaces/ws/datastores/{}/paths/{}"


def test_relative_absolute_and_file_urls():
    assert resolve_image_url("images/a.jpg", "/data/set") == "/data/set/images/a.jpg"
    assert resolve_image_url("./images/./a.jpg", "/data/set") == "/data/set/images/a.jpg"
    assert resolve_image_url("images/../b.jpg", "/data/set") == "/data/set/b.jpg"
    assert resolve_image_url("/srv/img/a.jpg", "/data/set") == "/srv/img/a.jpg"
    assert resolve_image_url("file:///srv/img/a%20b.jpg", "/data/set") == "/srv/img/a b.jpg"
    assert resolve_image_url("file://localhost/srv/a.jpg", "/data/set") == "/srv/a.jpg"
    assert resolve_image_url("https://example.org/a.jpg?x=1", "/data/set") == "https://example.org/a.jpg?x=1"


def test_azureml_uris_use_the_datastore_map_or_the_jsonl_folder():
    stores = {"blobstore": "/mnt/blob"}
    assert resolve_image_url(AZ.format("blobstore", "image_data/Image_01.jpg"), "/d", stores) == \
        "/mnt/blob/image_data/Image_01.jpg"
    assert resolve_image_url("azureml://datastores/blobstore/paths/x/y.png", "/d", stores) == "/mnt/blob/x/y.png"
    assert resolve_image_url(AZ.format("other", "image_data/a%20b.jpg"), "/d", stores) == "/d/image_data/a b.jpg"


@pytest.mark.parametrize("url", [
    "../secret.jpg",
    "images/../../secret.jpg",
    AZ.format("blobstore", "../../etc/passwd"),
    AZ.format("blobstore", "%2e%2e/%2e%2e/etc/passwd"),
    AZ.format("blobstore", "/etc/passwd"),
    AZ.format("unmapped", "../x.jpg"),
])
def test_escaping_the_root_is_an_error(url):
    with pytest.raises(ValueError, match="escapes"):
        resolve_image_url(url, "/data/set", {"blobstore": "/mnt/blob"})


@pytest.mark.parametrize("url, words", [
    ("file://otherhost/a.jpg", "only local files"),
    ("s3://bucket/a.jpg", "unsupported URL scheme"),
    ("azureml://locations/x/workspaces/y/data/z/versions/1", "not an azureml datastore URI"),
    ("images/a\x00.jpg", "NUL"),
    ("http:///nohost.jpg", "no host"),
])
def test_unsupported_forms(url, words):
    with pytest.raises(ValueError, match=words):
        resolve_image_url(url, "/data/set", {})


def test_parse_datastores_merges_env_and_options(tmp_path):
    env = {"VISIONML_DATASTORES": f"a={tmp_path}/one, b=relative"}
    stores = parse_datastores([f"b={tmp_path}/two"], env=env)
    assert stores == {"a": f"{tmp_path}/one", "b": f"{tmp_path}/two"}
    assert parse_datastores(None, env={"VISIONML_DATASTORES": "c=rel"})["c"].startswith("/")
    with pytest.raises(UsageError, match="NAME=DIR"):
        parse_datastores(["nodir"], env={})


def test_reader_resolves_every_local_form(tmp_path, monkeypatch):
    data_dir, store = tmp_path / "data", tmp_path / "store"
    rel = write_image(data_dir / "images" / "rel.jpg")
    absolute = write_image(tmp_path / "elsewhere" / "abs.png", fmt="PNG")
    as_uri = write_image(tmp_path / "elsewhere" / "uri.png", fmt="PNG")  # another file: one image per line
    mapped = write_image(store / "image_data" / "mapped.jpg")
    fallback = write_image(data_dir / "image_data" / "fallback.jpg")
    from_env = write_image(tmp_path / "envstore" / "e.jpg")
    monkeypatch.setenv("VISIONML_DATASTORES", f"envstore={tmp_path / 'envstore'}")
    src = write_jsonl(data_dir / "train.jsonl", [
        {"image_url": "images/rel.jpg", "label": "a"},
        {"image_url": str(absolute), "label": "b"},
        {"image_url": as_uri.as_uri(), "label": "c"},
        {"image_url": AZ.format("workspaceblobstore", "image_data/mapped.jpg"), "label": "d"},
        {"image_url": AZ.format("unmapped", "image_data/fallback.jpg"), "label": "e"},
        {"image_url": "azureml://datastores/envstore/paths/e.jpg", "label": "f"},
    ])
    data = read_dataset(src, datastores=parse_datastores([f"workspaceblobstore={store}"]))
    assert [r.path for r in data.records] == [str(p) for p in (rel, absolute, as_uri, mapped, fallback, from_env)]
    assert [r.format for r in data.records] == ["jpeg", "png", "png", "jpeg", "jpeg", "jpeg"]


# ----------------------------------------------------------------------------- http(s)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        if self.path.startswith("/slow"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(2)
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    image = write_image(tmp_path / "served.jpg", size=(48, 32)).read_bytes()
    _Handler.files = {"/img/cat.jpg": image, "/big.bin": b"\0" * 5000}
    _Handler.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_fetch_downloads_once_into_the_cache(server, tmp_path):
    base, handler = server
    cache = tmp_path / "cache"
    first = fetch(f"{base}/img/cat.jpg", cache)
    second = fetch(f"{base}/img/cat.jpg", cache)
    assert first == second == cache_path(f"{base}/img/cat.jpg", cache)
    assert first.suffix == ".jpg" and first.read_bytes() == handler.files["/img/cat.jpg"]
    assert handler.hits == ["/img/cat.jpg"]
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temp file left behind


@pytest.mark.parametrize("path, kwargs, words", [
    ("/missing.jpg", {}, "HTTP 404"),
    ("/big.bin", {"max_bytes": 1000}, "over the cap"),
    ("/slow", {"timeout": 0.5}, "timed out"),
])
def test_fetch_failures_leave_nothing_in_the_cache(server, tmp_path, path, kwargs, words):
    base, _ = server
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=words):
        fetch(base + path, cache, **kwargs)
    assert list(cache.iterdir()) == []


def test_reader_checks_http_images_through_the_cache(server, tmp_path):
    base, handler = server
    src = write_jsonl(tmp_path / "t.jsonl", [
        {"image_url": f"{base}/img/cat.jpg", "label": "cat"},
        {"image_url": f"{base}/img/cat.jpg", "label": "cat"},
        {"image_url": f"{base}/img/gone.jpg", "label": "dog"},
    ])
    data = read_dataset(src, skip_invalid=True)
    # the two lines of one image and label are one image (Azure keeps the last line's label)
    assert [(r.line, r.path, r.width, r.height) for r in data.records] == [(2, f"{base}/img/cat.jpg", 48, 32)]
    assert [(w.line, w.kind) for w in data.warnings] == [(1, "duplicate image_url")]
    assert [(p.line, p.field) for p in data.problems] == [(3, "image_url")]
    assert "HTTP 404" in data.problems[0].reason
    assert sorted(handler.hits) == ["/img/cat.jpg", "/img/gone.jpg"]  # one download per distinct URL


def test_no_image_check_does_not_touch_the_network(server, tmp_path):
    base, handler = server
    src = write_jsonl(tmp_path / "t.jsonl", [{"image_url": f"{base}/img/cat.jpg", "label": "cat"}])
    assert read_dataset(src, check_images=False).records[0].path == f"{base}/img/cat.jpg"
    assert handler.hits == []
