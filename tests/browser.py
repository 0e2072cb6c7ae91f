"""Headless Chromium for the report tests: load a page from disk, report what it decoded and which links
resolve, and take a screenshot.

Chromium is Debian's `chromium` package (or `chromium-browser` / `google-chrome` on PATH). Without it the
browser tests are skipped with the reason, except under CI=true, where they fail: CI must never pass by
skipping them (.ci/run installs it). No selenium: the page is copied, a small checker script is added to
the copy, it writes its findings into the page, and `--dump-dom` prints them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# Flags that keep Chromium off the network and out of the user's profile on a closed machine.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--allow-file-access-from-files"]

# Runs after the page loaded: every <img> (decoded or not) and every link: an anchor must name an element
# of the page, a file link is loaded as an image (the report links only to its pictures).
CHECKER = """
<script>
window.addEventListener('load', async () => {
  const images = [...document.images].map(i => ({src: i.getAttribute('src'), width: i.naturalWidth}));
  const links = [];
  for (const a of document.querySelectorAll('a[href]')) {
    const href = a.getAttribute('href');
    if (href.startsWith('#')) {
      links.push({href, ok: document.getElementById(decodeURIComponent(href.slice(1))) !== null});
    } else {
      const ok = await new Promise(done => { const i = new Image(); i.onload = () => done(i.naturalWidth > 0);
                                              i.onerror = () => done(false); i.src = href; });
      links.push({href, ok});
    }
  }
  const out = document.createElement('pre');
  out.id = 'fqvae-check';
  out.textContent = JSON.stringify({images, links});
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "headless Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Chromium is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="fqvae-chromium-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


def check_page(folder: Path, page: str = "index.html") -> dict:
    """{'images': [{'src', 'width'}], 'links': [{'href', 'ok'}]} of `folder/page` as Chromium loaded it."""
    with tempfile.TemporaryDirectory(prefix="fqvae-page-") as tmp:
        copy = Path(tmp) / "page"
        shutil.copytree(folder, copy)
        html = (copy / page).read_text(encoding="utf-8")
        (copy / page).write_text(html.replace("</body>", CHECKER + "</body>"), encoding="utf-8")
        res = _run(["--virtual-time-budget=20000", "--dump-dom", (copy / page).as_uri()])
    found = re.search(r'<pre id="fqvae-check">(.*?)</pre>', res.stdout, re.S)
    assert found, f"the checker did not run: {res.stderr[-2000:]}"
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text)


def screenshot(page: Path, out: Path, size: str = "1280,2400") -> Path:
    res = _run([f"--screenshot={out}", f"--window-size={size}", page.as_uri()])
    assert out.is_file() and out.stat().st_size > 0, res.stderr[-2000:]
    return out
