import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db
CSS = Path(__file__).resolve().parents[2] / "ocr_app/static/ocr_app/site.css"


def test_home_page_offers_upload_and_sign_in(client):
    page = client.get("/")
    assert page.status_code == 200 and "csrftoken" in page.cookies
    html = page.content.decode()
    assert '<label for="image-input"' in html and 'id="image-input"' in html
    assert 'href="/accounts/login/?next=/"' in html


def test_sign_in_and_out(client, user):
    assert client.get("/accounts/login/").status_code == 200
    wrong = client.post("/accounts/login/", {"username": "reader", "password": "nope"})
    assert wrong.status_code == 200 and 'role="alert"' in wrong.content.decode()
    right = client.post("/accounts/login/", {"username": "reader", "password": "pw-reader-1", "next": "/"})
    assert right.status_code == 302 and right["Location"] == "/"
    assert "Signed in as <strong>reader</strong>" in client.get("/").content.decode()
    assert client.post("/accounts/logout/").status_code == 302


def test_pages_use_only_files_the_app_serves(client, staff):
    client.force_login(staff)
    for url in ("/", "/review/", "/accounts/login/"):
        html = client.get(url).content.decode()
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
            assert not re.match(r"(https?:)?//", ref), f"{url} loads {ref} from another host"
    for asset in ("ocr_app/site.css", "ocr_app/upload.js", "ocr_app/review.js",
                  "ocr_app/fonts/NotoNaskhArabic-Regular.ttf"):
        assert finders.find(asset), asset
    assert not re.search(r"url\((['\"]?)(https?:)?//", CSS.read_text())


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("foreground, background", [
    ("text", "background"), ("muted", "background"), ("accent", "background"), ("accent-text", "accent"),
    ("error", "error-background"), ("text", "highlight"), ("text", "notice-background"),
    ("accent", "notice-background"), ("error", "background"),
])
def test_colour_pairs_meet_wcag_aa(foreground, background):
    palette = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6});", CSS.read_text()))
    assert contrast(palette[foreground], palette[background]) >= 4.5
    assert contrast(palette["border"], palette["background"]) >= 3.0  # control borders: non-text contrast
