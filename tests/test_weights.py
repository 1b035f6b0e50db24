"""The download path against a small HTTP server on 127.0.0.1 (no internet needed)."""

import hashlib
import http.server
import json
import threading

import pytest

from engine.models import weights
from engine.models.weights import DownloadError, download
from tests.conftest import run_engine

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    cut_once = set()
    log: list = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.log.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/error"):
            self.send_error(503, "Service Unavailable")
            return
        if self.path.startswith("/html"):
            body = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        body = PAYLOAD[start:]
        if self.path.startswith("/cut") and self.path not in self.cut_once:
            # Send part of the file, then drop the connection: a network failure mid-download.
            self.cut_once.add(self.path)
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    _Handler.log.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_good_file_verified(server, tmp_path):
    seen = []
    digest = download(f"{server}/file.bin", tmp_path / "m" / "file.bin", SHA, progress=lambda d, t: seen.append((d, t)))
    assert digest == SHA and (tmp_path / "m" / "file.bin").read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (tmp_path / "m" / "file.bin.part").exists()


def test_wrong_hash_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match="wrong SHA-256"):
        download(f"{server}/file.bin", tmp_path / "file.bin", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes_with_range(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="stopped early|cannot reach"):
        download(f"{server}/cut/file.bin", dest, SHA)
    part = tmp_path / "file.bin.part"
    assert not dest.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    have = part.stat().st_size
    assert download(f"{server}/cut/file.bin", dest, SHA) == SHA
    assert dest.read_bytes() == PAYLOAD
    assert _Handler.log[-1] == ("/cut/file.bin", f"bytes={have}-")


def test_server_error_and_web_page_are_refused(server, tmp_path):
    with pytest.raises(DownloadError, match="503"):
        download(f"{server}/error/file.bin", tmp_path / "a.bin", SHA)
    with pytest.raises(DownloadError, match="web page"):
        download(f"{server}/html/model.yaml", tmp_path / "model.yaml")
    assert list(tmp_path.iterdir()) == []


def test_models_check_and_fetch_from_a_mirror(server, tmp_path):
    models = tmp_path / "models"
    proc = run_engine("models", "check", "--models", str(models), "--json")
    assert proc.returncode == 2
    rows = json.loads(proc.stdout)["files"]
    assert {r["status"] for r in rows} == {"missing"}
    # The mirror serves bytes that are not the official CLIP file: the pinned hash refuses them.
    proc = run_engine(
        "models", "fetch", "--models", str(models), "--mirror", server, "--only", "open_clip_vit_b32_openai.safetensors"
    )
    assert proc.returncode == 2 and "wrong SHA-256" in proc.stderr
    assert not (models / "open_clip_vit_b32_openai.safetensors").exists()
    # An unpinned file must also load as what it claims to be before it is kept and pinned.
    proc = run_engine("models", "fetch", "--models", str(models), "--mirror", server, "--only", "Wav2CLIP.pt")
    assert proc.returncode == 2 and "not a valid audio file" in proc.stderr
    assert not (models / "Wav2CLIP.pt").exists() and weights.load_pins(models) == {}


def test_offline_folder_with_user_dropped_files(tmp_path, small_models):
    models = tmp_path / "models"
    models.mkdir()
    (models / "Wav2CLIP.pt").write_bytes((small_models / "Wav2CLIP.pt").read_bytes())
    rows = {r["name"]: r["status"] for r in weights.check(models)}
    assert rows["Wav2CLIP.pt"] == "unpinned" and rows["open_clip_vit_b32_openai.safetensors"] == "missing"
    weights.save_pin(models, "Wav2CLIP.pt", "f" * 64)
    assert {r["name"]: r["status"] for r in weights.check(models)}["Wav2CLIP.pt"] == "bad-hash"
