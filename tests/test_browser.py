"""The page in a real browser: Debian's Chromium driven by Playwright, against the real server
(`catscan serve` in a subprocess, real models, real photos; ``oxford_images`` is a fixture of
tests/conftest.py).

Skipped when /usr/bin/chromium is missing, unless CATSCAN_REQUIRE_BROWSER=1 (then it fails).
Screenshots go to $CATSCAN_ARTIFACT_DIR if set, else to pytest's tmp_path.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
CAT_PHOTO = "Persian_10.jpg"
DOG_PHOTO = "beagle_10.jpg"
TIMEOUT_MS = 30_000  # generous: CI machines may be busy training models


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    env = os.environ.get("CATSCAN_ARTIFACT_DIR")
    folder = Path(env) if env else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`catscan serve` on a free port; yields its base URL once /healthz says the models are loaded."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "serve.log"
    cmd = [sys.executable, "-m", "catscanner", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"catscan serve exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"catscan serve not ready after 90 s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: install it with `apt-get install -y chromium`."
        if os.environ.get("CATSCAN_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Page:
    """A Playwright page on the app that records every request it makes."""

    def __init__(self, page, base_url: str):
        self.page, self.base_url = page, base_url
        self.requests: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.set_default_timeout(TIMEOUT_MS)

    def external_requests(self) -> list[str]:
        return [u for u in self.requests
                if not (u.startswith(self.base_url + "/") or u.startswith(("blob:", "data:")))]


@pytest.fixture
def page(browser, server: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = Page(context.new_page(), server)
    p.page.goto(server + "/")
    yield p
    context.close()


def api_scan(server: str, name: str, data: bytes, mime: str = "image/jpeg") -> httpx.Response:
    return httpx.post(f"{server}/api/v1/scan", files={"file": (name, data, mime)}, timeout=60)


def expect_result_matches_api(page, api: dict) -> None:
    """The page shows the API's answer: the verdict, each cat with its breed bars, one box per cat."""
    from playwright.sync_api import expect

    n = len(api["cats"])
    verdict = ("Cat found" if n == 1 else f"{n} cats found") if api["is_cat"] else "No cat found"
    expect(page.locator("#verdict")).to_have_text(verdict, timeout=TIMEOUT_MS)
    expect(page.locator("#confidence")).to_contain_text(f"{round(100 * api['cat_probability'])} %")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#status")).to_have_text(f"{verdict}. {page.locator('#confidence').text_content()}.")  # read out
    expect(page.locator("#boxes [data-testid=box]")).to_have_count(n)
    cats = page.locator("#cats [data-testid=cat]")
    expect(cats).to_have_count(n)
    for i, cat in enumerate(api["cats"]):
        breeds = cats.nth(i).locator("[data-testid=breed]")
        expect(breeds).to_have_count(len(cat["breeds"]))
        if cat["breeds"]:
            top = cat["breeds"][0]
            expect(breeds.first.locator(".breed-name")).to_have_text(top["breed"])
            expect(breeds.first.locator(".breed-percent")).to_have_text(f"{round(top['percent'])} %")
        for j, share in enumerate(cat["breeds"]):  # each bar is filled to its share
            bar = breeds.nth(j).locator(".breed-bar").bounding_box()
            fill = breeds.nth(j).locator(".breed-fill").bounding_box()
            assert fill["width"] == pytest.approx(bar["width"] * share["percent"] / 100, abs=2), share
    if api["breeds"]:
        expect(page.locator("#breeds-note")).to_be_hidden()
    else:
        expect(page.locator("#breeds-note")).to_have_text(api["breeds_note"])


# ---------------------------------------------------------------------------- tests
def test_cat_photo_through_the_file_input(page: Page, server: str, oxford_images: Path,
                                          artifact_dir: Path) -> None:
    from playwright.sync_api import expect

    photo = oxford_images / CAT_PHOTO
    api = api_scan(server, photo.name, photo.read_bytes()).json()
    assert api["is_cat"] is True

    assert len(api["cats"]) == 1 and api["breeds"][0]["breed"] == "Persian"

    pg = page.page
    pg.set_input_files("#file", str(photo))
    expect_result_matches_api(pg, api)

    # The box sits where the API says the cat is, relative to the displayed photo.
    drawn = pg.locator("#boxes [data-testid=box]").first
    expect(drawn).to_be_visible()
    expect(drawn).to_contain_text("Persian")  # its label: the cat's number and top breed
    expect(pg.locator("#preview")).to_be_visible()
    pg.wait_for_function("document.getElementById('preview').complete")
    img, box = pg.locator("#preview").bounding_box(), drawn.bounding_box()
    scale = img["width"] / api["width"]
    b = api["box"]
    assert box["x"] - img["x"] == pytest.approx(b["left"] * scale, abs=3)
    assert box["y"] - img["y"] == pytest.approx(b["top"] * scale, abs=3)
    assert box["width"] == pytest.approx((b["right"] - b["left"]) * scale, abs=3)
    assert box["height"] == pytest.approx((b["bottom"] - b["top"]) * scale, abs=3)

    pg.screenshot(path=str(artifact_dir / "web-cat-result.png"), full_page=True)
    assert page.external_requests() == []


def test_two_cats_get_two_boxes_and_tapping_a_cat_highlights_its_box(page: Page, server: str, data_dir: Path,
                                                                     artifact_dir: Path) -> None:
    """A photo with several cats (the first report scene of two or three Oxford test cats in which the
    API finds two or more: the page must draw what the API says): one box and one breed list per cat;
    tapping a cat in the list highlights it and its box, tapping again clears it."""
    import io

    from playwright.sync_api import expect

    from catscanner.training.scenes import Pools, make_scene

    pools = Pools("report", data_dir)
    for i in range(40):
        scene = make_scene(pools, i)
        if len(scene.cats) < 2:
            continue
        buf = io.BytesIO()
        scene.image.save(buf, "JPEG", quality=92)
        api = api_scan(server, f"scene{i}.jpg", buf.getvalue()).json()
        if len(api["cats"]) >= 2:
            break
    else:
        pytest.fail("no report scene of the first 40 had two cats found: see test_detector's several-cats test")

    pg = page.page
    pg.set_input_files("#file", files=[{"name": f"scene{i}.jpg", "mimeType": "image/jpeg", "buffer": buf.getvalue()}])
    expect_result_matches_api(pg, api)
    boxes = pg.locator("#boxes [data-testid=box]")
    for n, cat in enumerate(api["cats"]):  # each box carries its number and its cat's top breed
        expect(boxes.nth(n)).to_contain_text(f"{n + 1}: {cat['breeds'][0]['breed']}")
    # Every breed bar has the same track (each row was its own grid: a long name shortened its bar,
    # so 35 % of one cat's bar was not 35 % of another's), and each box label is one line inside the photo.
    pg.wait_for_function("document.getElementById('preview').complete")
    tracks = {(round(b["x"]), round(b["width"])) for b in
              (bar.bounding_box() for bar in pg.locator("#cats .breed-bar").all())}
    assert len(tracks) == 1, tracks
    img = pg.locator("#preview").bounding_box()
    line = pg.evaluate("parseFloat(getComputedStyle(document.querySelector('.box-label')).lineHeight)")
    for label in pg.locator("#boxes .box-label").all():
        lb = label.bounding_box()
        assert lb["height"] < 2 * line and lb["y"] >= img["y"] - 1, (lb, img)
        assert lb["x"] >= img["x"] - 4 and lb["x"] + lb["width"] <= img["x"] + img["width"] + 4, (lb, img)
    second = pg.locator("#cats [data-testid=cat]").nth(1)
    second.locator(".cat-head").click()
    expect(second).to_have_class("cat highlight")
    expect(boxes.nth(1)).to_have_class("box highlight")
    expect(boxes.nth(0)).to_have_class("box")
    pg.screenshot(path=str(artifact_dir / "web-two-cats.png"), full_page=True)
    second.locator(".cat-head").click()
    expect(boxes.nth(1)).to_have_class("box")
    expect(second).to_have_class("cat")
    assert page.external_requests() == []


def test_non_image_shows_the_api_error(page: Page, server: str, artifact_dir: Path) -> None:
    from playwright.sync_api import expect

    data = b"Shopping list: cat food, litter.\n"
    api = api_scan(server, "notes.jpg", data)
    assert api.status_code == 415
    message = api.json()["error"]["message"]

    pg = page.page
    pg.set_input_files("#file", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": data}])
    expect(pg.locator("#error")).to_have_text(message)
    expect(pg.locator("#error")).to_be_visible()
    expect(pg.locator("#report")).to_be_hidden()
    pg.screenshot(path=str(artifact_dir / "web-error.png"), full_page=True)


def test_a_photo_the_browser_shows_unturned_gets_no_misplaced_boxes(page: Page, server: str, oxford_images: Path,
                                                                     artifact_dir: Path) -> None:
    """A WebP with EXIF orientation 6: the server scans it upright (375x500 turned to 500x375 and back),
    but Chromium shows WebP without turning it, and the box was drawn as shares of the wrong shape,
    across the cat. Where the preview's shape is not the scanned photo's, the boxes are hidden and a
    note says why; the cat is still listed."""
    import io

    from PIL import Image
    from playwright.sync_api import expect

    with Image.open(oxford_images / CAT_PHOTO) as img:
        turned = img.convert("RGB").transpose(Image.Transpose.ROTATE_90)  # stored on its side ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with the tag that says "turn me 90 degrees clockwise"
    buf = io.BytesIO()
    turned.save(buf, "WEBP", exif=exif.tobytes(), quality=90)
    api = api_scan(server, "turned.webp", buf.getvalue(), "image/webp").json()
    assert api["is_cat"] is True and (api["width"], api["height"]) == turned.size[::-1]

    pg = page.page
    pg.set_input_files("#file", files=[{"name": "turned.webp", "mimeType": "image/webp", "buffer": buf.getvalue()}])
    expect(pg.locator("[data-testid=cat]")).to_have_count(1)
    pg.wait_for_function("document.getElementById('preview').complete")
    natural = pg.evaluate("[document.getElementById('preview').naturalWidth, document.getElementById('preview').naturalHeight]")
    if tuple(natural) == turned.size:  # shown unturned, as Chromium does for WebP
        expect(pg.locator("#boxes [data-testid=box]")).to_be_hidden()
        expect(pg.locator("#preview-note")).to_contain_text("shows the photo turned")
    else:  # a browser that turns it shows the boxes on it
        assert tuple(natural) == (api["width"], api["height"])
        expect(pg.locator("#boxes [data-testid=box]")).to_be_visible()
        expect(pg.locator("#preview-note")).to_be_hidden()
    pg.screenshot(path=str(artifact_dir / "web-turned-webp.png"), full_page=True)

    pg.set_input_files("#file", str(oxford_images / CAT_PHOTO))  # the next photo gets its boxes back
    expect(pg.locator("#boxes [data-testid=box]")).to_be_visible()
    expect(pg.locator("#preview-note")).to_be_hidden()


def test_drop_and_paste(page: Page, server: str, oxford_images: Path) -> None:
    """A dog photo dropped on the page, then a cat photo pasted: each replaces the last result."""
    pg = page.page
    for event, name in (("drop", DOG_PHOTO), ("paste", CAT_PHOTO)):
        data = (oxford_images / name).read_bytes()
        api = api_scan(server, name, data).json()
        pg.evaluate(
            """([event, name, b64]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
                const target = event === "drop" ? document.getElementById("dropzone") : document;
                const e = event === "drop"
                    ? new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true })
                    : new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true });
                target.dispatchEvent(e);
            }""",
            [event, name, base64.b64encode(data).decode()],
        )
        assert api["is_cat"] is (name == CAT_PHOTO)
        expect_result_matches_api(pg, api)  # includes one box per cat: none for the dog


def test_phone_layout(browser, server: str, oxford_images: Path, artifact_dir: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    try:
        page = Page(context.new_page(), server)
        pg = page.page
        pg.goto(server + "/")
        expect(pg.locator("label[for=camera]")).to_be_visible()  # the camera option on a phone
        assert pg.get_attribute("#camera", "capture") is not None
        assert pg.get_attribute("#camera", "accept") == "image/*"

        photo = oxford_images / CAT_PHOTO
        api = api_scan(server, photo.name, photo.read_bytes()).json()
        pg.set_input_files("#camera", str(photo))
        expect_result_matches_api(pg, api)
        # Nothing wider than the screen, and the verdict shows without scrolling.
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        verdict = pg.locator("#verdict").bounding_box()
        assert verdict["y"] + verdict["height"] <= 844
        # A viewport screenshot: a full-page one makes Chromium drop the touch emulation while capturing.
        pg.screenshot(path=str(artifact_dir / "web-phone-result.png"))
        assert page.external_requests() == []
    finally:
        context.close()


def test_desktop_hides_the_camera_button(page: Page) -> None:
    from playwright.sync_api import expect

    expect(page.page.locator("label[for=file]")).to_be_visible()
    expect(page.page.locator("label[for=camera]")).to_be_hidden()
    # keyboard users: Tab reaches the photo chooser and then the page's link, never the hidden camera input
    focused = []
    for _ in range(3):
        page.page.keyboard.press("Tab")
        focused.append(page.page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert "camera" not in focused and "file" in focused, focused
