"""The built book in a real browser: headless Chromium opens every page of ``_build/html``,
served on localhost, at a 1280-pixel-wide window, and checks what a reader sees.

- MathJax typeset every formula (no raw ``\\(``, ``\\[`` or ``$$`` left in the text, no TeX
  error), from the book's own copy of MathJax: the page asks for nothing outside the site;
- every image loaded (non-zero natural width) and every same-site file the page asked for
  was found;
- every internal link resolves, anchors included;
- each chapter's Colab launch button opens the chapter's ``.ipynb`` under
  ``repository.url``;
- no code block in a chapter scrolls horizontally.

A screenshot of each page is saved under ``_build/screenshots/`` for a reviewer.

The test needs the built book (``jupyter-book build .``), Playwright (requirements.txt) and a
Chromium-family browser: ``UNLEARNKIT_BROWSER`` if set, else ``chromium`` (Debian's, which
``.ci/run`` installs) or ``google-chrome``. Without them it skips, unless
``UNLEARNKIT_REQUIRE_BUILD=1`` (``.ci/run`` and the workflow set it after the build), which
turns the skip into a failure.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
WIDTH, HEIGHT = 1280, 900
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REDIRECT = re.compile(r'<meta http-equiv="refresh"', flags=re.IGNORECASE)
REQUIRED = os.environ.get("UNLEARNKIT_REQUIRE_BUILD") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason + " (UNLEARNKIT_REQUIRE_BUILD=1)")
    pytest.skip(reason)


def _browser() -> str | None:
    if os.environ.get("UNLEARNKIT_BROWSER"):
        return shutil.which(os.environ["UNLEARNKIT_BROWSER"]) or os.environ["UNLEARNKIT_BROWSER"]
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def pages() -> list[str]:
    """Every HTML page of the built book, relative to ``_build/html`` (not the theme's and
    Sphinx's own folders: ``_static``, ``_sources``, ``_images``...)."""
    if not HTML.is_dir():
        return []
    return sorted(
        str(path.relative_to(HTML))
        for path in HTML.rglob("*.html")
        if not any(part.startswith("_") for part in path.relative_to(HTML).parts)
    )


def chapters() -> dict[str, str]:
    """Built page -> notebook path in the repository, for every chapter that is a notebook."""
    found = {}
    for page in pages():
        source = ROOT / Path(page).with_suffix(".ipynb")
        if source.exists():
            found[page] = str(source.relative_to(ROOT))
    return found


def colab_link(notebook: str) -> str:
    """The launch button's address for ``notebook`` (a path in the repository)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    owner_repo = urlsplit(config["repository"]["url"]).path.strip("/")
    branch = config["repository"].get("branch", "main")
    path_to_book = (config["repository"].get("path_to_book") or "").strip("/")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    path = f"{path_to_book}/{notebook}" if path_to_book else notebook
    return f"{colab}/github/{owner_repo}/blob/{branch}/{path}"


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def _anchors(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


# Runs in the page once it has loaded: what the checks need, as JSON.
INSPECT = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  await document.fonts.ready;
  await Promise.all(Array.from(document.images).map(img =>
    img.complete ? null : new Promise(done => { img.onload = img.onerror = done; })));
  // Visible prose: the page's text without code, scripts and typeset math.
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml, .highlight')
       .forEach(el => el.remove());
  const maths = Array.from(document.querySelectorAll('.math'));
  // Display formulas wider than their column (reported in report.json, not asserted).
  const wideFormulas = Array.from(document.querySelectorAll('div.math')).map(div => {
    const math = div.querySelector('mjx-math');
    return math ? {width: Math.round(math.getBoundingClientRect().width), column: div.clientWidth,
                   id: div.id} : null;
  }).filter(f => f && f.width > f.column);
  return {
    wide_formulas: wideFormulas,
    url: location.href,
    mathjax: !!window.MathJax,
    maths: maths.length,
    typeset: maths.filter(el => el.querySelector('mjx-container')).length,
    errors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
    text: prose.innerText,
    images: Array.from(document.images).map(img => ({src: img.currentSrc || img.src,
                                                      width: img.naturalWidth})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  };
}
"""

# Runs after the screenshot: open every collapsed part (hidden inputs, solutions), then
# measure every block of code (cell inputs and code in the prose) and of cell output.
MEASURE = """
() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-button-hidden').forEach(b => b.click());
  const article = document.querySelector('article') || document.body;
  return Array.from(article.querySelectorAll('pre')).map(pre => ({
    output: !!pre.closest('.cell_output'),
    visible: pre.getClientRects().length > 0,
    scroll: pre.scrollWidth, client: pre.clientWidth,
    line: (pre.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '')),
  }));
}
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def seen() -> dict[str, dict]:
    """Open every page once; return what each page showed."""
    if not (HTML / "index.html").exists():
        _unavailable("the book is not built (_build/html/index.html is missing)")
    browser_path = _browser()
    if browser_path is None:
        _unavailable("no Chromium-family browser (install Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -r requirements.txt)")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    results: dict[str, dict] = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=browser_path, headless=True, args=CHROMIUM_FLAGS
            )
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
            for page_path in pages():
                outside: list[str] = []
                missing: list[str] = []
                page = context.new_page()

                def route(request_route, outside=outside) -> None:
                    url = request_route.request.url
                    if url.startswith((origin, "data:", "blob:", "about:")):
                        request_route.continue_()
                    else:
                        outside.append(url)
                        request_route.abort()

                page.route("**/*", route)
                page.on(
                    "response",
                    lambda response, missing=missing: (
                        missing.append(f"{response.status} {response.url}")
                        if response.status >= 400
                        else None
                    ),
                )
                address = f"{origin}/{page_path}"
                page.goto(address, wait_until="load")
                if REDIRECT.search((HTML / page_path).read_text(errors="replace")):
                    # index.html sends the reader on to the root chapter.
                    page.wait_for_url(lambda url, address=address: url != address, wait_until="load")
                result = page.evaluate(INSPECT)
                result["outside"] = outside
                result["missing"] = missing
                shot = SCREENSHOTS / (page_path.replace("/", "__").removesuffix(".html") + ".png")
                page.screenshot(path=str(shot), full_page=True)
                result["screenshot"] = str(shot)
                result["blocks"] = page.evaluate(MEASURE)
                results[page_path] = result
                page.close()
            browser.close()
    finally:
        server.shutdown()
    for result in results.values():
        result["origin"] = origin
    (SCREENSHOTS / "report.json").write_text(
        json.dumps(
            {page: {k: v for k, v in r.items() if k != "text"} for page, r in results.items()}, indent=1
        )
    )
    summary = (
        f"{len(results)} pages opened in {Path(browser_path).name} at {WIDTH} px "
        f"({len(chapters())} chapters): {sum(r['maths'] for r in results.values())} formulas, "
        f"{sum(len(r['images']) for r in results.values())} images, "
        f"{sum(len(r['links']) for r in results.values())} links, "
        f"{sum(len(r['blocks']) for r in results.values())} blocks of code and output measured"
    )
    (SCREENSHOTS / "summary.txt").write_text(summary + "\n")
    return results


def test_every_page_was_opened(seen: dict[str, dict]) -> None:
    assert "index.html" in seen
    assert set(chapters()) <= set(seen)
    assert len(chapters()) >= 7
    print(f"{len(seen)} pages opened, {len(chapters())} of them chapters")


RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\\(?:frac|mathcal|theta|sum|mathbb|log|mathrm)\b")


def test_mathjax_typeset_every_formula(seen: dict[str, dict]) -> None:
    problems = []
    total = 0
    for page, result in seen.items():
        total += result["maths"]
        if result["maths"] and not result["mathjax"]:
            problems.append(f"{page}: MathJax did not load")
        if result["typeset"] != result["maths"]:
            problems.append(
                f"{page}: {result['maths'] - result['typeset']} of {result['maths']} formulas not typeset"
            )
        if result["errors"]:
            problems.append(f"{page}: {result['errors']} TeX errors")
        raw = RAW_TEX.findall(result["text"])
        if raw:
            problems.append(f"{page}: raw TeX in the text: {sorted(set(raw))}")
    assert total > 0, "no formula found in the whole book"
    assert not problems, "\n".join(problems)


def test_nothing_is_fetched_from_outside_the_site(seen: dict[str, dict]) -> None:
    outside = {page: result["outside"] for page, result in seen.items() if result["outside"]}
    assert not outside, f"pages asked for files outside the book (CDN?): {outside}"


def test_every_image_loaded(seen: dict[str, dict]) -> None:
    broken = [
        f"{page}: {image['src']}" for page, r in seen.items() for image in r["images"] if image["width"] <= 0
    ]
    missing = [f"{page}: {entry}" for page, r in seen.items() for entry in r["missing"]]
    assert sum(len(r["images"]) for r in seen.values()) > 0
    assert not broken, "images that did not load:\n" + "\n".join(broken)
    assert not missing, "same-site files not found:\n" + "\n".join(missing)


def test_every_internal_link_resolves(seen: dict[str, dict]) -> None:
    broken = []
    checked = 0
    for page, result in seen.items():
        for link in result["links"]:
            if not link.startswith(result["origin"]):
                continue
            parts = urlsplit(link)
            path = unquote(parts.path).lstrip("/")
            target = HTML / path
            if path == "" or path.endswith("/"):
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append(f"{page}: {link} (no file {target.relative_to(HTML)})")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and unquote(parts.fragment) not in _anchors(target)
            ):
                broken.append(f"{page}: {link} (no anchor #{parts.fragment})")
    assert checked > 0
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_colab_button_opens_the_chapter(seen: dict[str, dict]) -> None:
    colab = yaml.safe_load((ROOT / "_config.yml").read_text())["launch_buttons"]["colab_url"].rstrip("/")
    wrong = []
    for page, notebook in chapters().items():
        links = {link for link in seen[page]["links"] if link.startswith(colab)}
        if links != {colab_link(notebook)}:
            wrong.append(f"{page}: {sorted(links)} (expected {colab_link(notebook)})")
    assert not wrong, "\n".join(wrong)


def test_no_code_block_in_a_chapter_scrolls_sideways(seen: dict[str, dict]) -> None:
    """Code, that is cell inputs and code blocks in the prose (solutions included, opened);
    cell outputs are not code, and report.json lists those that scroll."""
    wide, hidden = [], []
    for page in chapters():
        for block in seen[page]["blocks"]:
            if not block["visible"]:
                hidden.append(f"{page}: {block['line'].strip()!r}")
            elif not block["output"] and block["scroll"] > block["client"] + 1:
                wide.append(
                    f"{page}: {block['scroll']} px of code in a {block['client']} px column: {block['line'].strip()!r}"
                )
    assert not hidden, "code blocks that could not be opened to measure:\n" + "\n".join(hidden)
    assert not wide, f"code wider than the column at {WIDTH} px:\n" + "\n".join(wide)


def test_a_screenshot_of_every_page(seen: dict[str, dict]) -> None:
    for result in seen.values():
        assert Path(result["screenshot"]).stat().st_size > 0
