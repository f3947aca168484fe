"""A report opened in headless Chromium (Debian's `chromium`): a screenshot, and what the page's
images are once loaded (naturalWidth, naturalHeight, complete), read back through the DOM."""
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

PROBE = """<script>
window.addEventListener('load', () => {
  const found = [...document.images].map(i => ({alt: i.alt, complete: i.complete,
    width: i.naturalWidth, height: i.naturalHeight, shown: i.getBoundingClientRect().width,
    scheme: i.src.split(':')[0]}));
  const pre = document.createElement('pre');
  pre.id = 'harness-probe';
  pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
});
</script>"""


def chromium():
    found = shutil.which("chromium")
    assert found, "the report test needs Debian's chromium (apt-get install chromium; .ci/run installs it)"
    return [found, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--virtual-time-budget=10000"]


def screenshot(html, png, width=1280, height=3000):
    proc = subprocess.run(chromium() + [f"--window-size={width},{height}", f"--screenshot={png}",
                                        html.resolve().as_uri()], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]
    return png


def images(html, scratch):
    """The page's images as the browser loaded them (a copy of the page with a probe script)."""
    probe = scratch / f"probe-{html.name}"
    probe.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(chromium() + ["--dump-dom", probe.resolve().as_uri()], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="harness-probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, "the probe script did not run: " + proc.stdout[-500:]
    return json.loads(m[1].replace("&quot;", '"').replace("&amp;", "&"))


class Links(HTMLParser):
    """Every src/href of a page: a self-contained page has only data: URIs and #anchors."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found += [(tag, v) for k, v in attrs if k in ("src", "href") and v]


def outside_references(html):
    parser = Links()
    parser.feed(html.read_text())
    return [(tag, v[:60]) for tag, v in parser.found if not (v.startswith("data:") or v.startswith("#"))]
