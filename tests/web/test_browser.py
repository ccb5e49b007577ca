"""End to end in headless Chromium: open a phantom study, check its score, remove a lesion, reload, sign.

The 'automatic' result is the phantom's reference label (a scorer override,
so the test does not depend on the trained model), and the score shown must
equal ``cacscore score IMAGE --mask LABEL --json``; after an edit it must
equal ``cacscore score IMAGE --mask EDITED --json``. That the model's
automatic result is served unchanged is checked in ``test_model.py``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from cacscore.cli.main import app as cli_app
from cacscore.io import read_mask, read_volume
from cacscore.web.dependencies import Settings, get_scorer
from cacscore.web.main import create_app
from cacscore.web.service import AutoResult

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Phantom case with lesions in LAD, LCX and RCA plus aortic-wall calcium and a sternal wire.
SEED, CATEGORY = 10, "D"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """uvicorn serving ``app`` on a free loopback port in a background thread."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A phantom cohort folder with one DICOM case; returns (data folder, case folder)."""
    from cacscore.phantom import generate_case
    from cacscore.phantom.cohort import write_case

    data = tmp_path_factory.mktemp("cohort")
    case = generate_case(SEED, target_category=CATEGORY)
    folder = write_case(case, data / "case_0000", fmt="dicom")
    return data, folder


#: Page coordinates of an inner pixel of lesion ``id`` on the slice shown (the viewer's own transform):
#: one whose four neighbours belong to the lesion too, so that whole-pixel mouse positions still hit it.
_PIXEL_OF_LESION = """(id) => {
  const ids = viewer.overlays.get(viewer.z).ids, w = viewer.study.shape[2];
  let i = ids.findIndex((v, k) => v === id && ids[k - 1] === id && ids[k + 1] === id
                                   && ids[k - w] === id && ids[k + w] === id);
  if (i < 0) i = ids.indexOf(id);
  const { sx, sy, ox, oy } = transform();
  const rect = canvas.getBoundingClientRect();
  const x = i % w, y = Math.floor(i / w);
  return [rect.left + ox + (x + 0.5) * sx, rect.top + oy + (y + 0.5) * sy];
}"""


def _score_json(image: Path, mask: Path | None = None) -> dict:
    """``cacscore score IMAGE [--mask MASK] --json`` (without a mask: the shipped model)."""
    options = ["--mask", str(mask)] if mask is not None else []
    result = CliRunner().invoke(cli_app, ["score", str(image), *options, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_review_in_the_browser(phantom: tuple[Path, Path], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Every edit is a round trip that rescores the study; on a loaded 2-core machine one took longer than
    # Playwright's default 5 s (about 1 run in 6), so the test waits for up to 30 s.
    expect.set_options(timeout=30_000)
    data, case_folder = phantom
    settings = Settings(
        data_dir=data, db_url=f"sqlite:///{tmp_path / 'review.db'}", upload_dir=tmp_path / "uploads"
    )
    app = create_app(settings)
    label = read_mask(case_folder / "label.nii.gz", read_volume(case_folder / "image"))

    def reference_scorer(volume: object) -> AutoResult:
        confidence = np.where(label > 0, 0.87, 0.0).astype(np.float32)
        return AutoResult(
            mask=label, method="model", model_version="phantom reference", confidence=confidence
        )

    app.dependency_overrides[get_scorer] = lambda: reference_scorer
    expected = _score_json(case_folder / "image", case_folder / "label.nii.gz")
    ARTIFACTS.mkdir(exist_ok=True)

    with _Server(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Console errors include Content-Security-Policy violations and failed requests.
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.goto(f"{base}/#/")
            page.click("text=case_0000")
            # Opening a study asks who reads (nothing is inherited from an earlier reader).
            expect(page.locator("#reader-dialog")).to_be_visible()
            assert page.input_value("#reader-name") == ""
            page.fill("#reader-name", "Dr Review")
            page.click("#reader-confirm")
            expect(page.locator("#reader")).to_have_text("Dr Review")
            total = page.locator("#total-agatston")
            expect(total).to_have_attribute("data-value", re.compile(r"\d"), timeout=30_000)
            # Orientation markers of an axial slice in the standard (identity) orientation.
            assert [page.inner_text(f"#orient-{side}") for side in ("left", "right", "top", "bottom")] == [
                "R",
                "L",
                "A",
                "P",
            ]

            # The score shown is the score cacscore computes for this volume and mask.
            shown = float(total.get_attribute("data-value") or "nan")
            assert shown == expected["agatston"]
            assert page.locator("#cac-drs").inner_text() == expected["cac_drs"]
            for artery, values in expected["arteries"].items():
                cell = page.locator(f'#scores tr[data-artery="{artery}"] td[data-value]')
                if cell.count():
                    assert float(cell.get_attribute("data-value") or "nan") == values["agatston"]

            # Remove the highest-scoring lesion: the total drops by exactly its share.
            state = page.evaluate("() => viewer.state")
            lesion = max(state["lesions"], key=lambda row: row["agatston"])
            page.click(f'ul.lesions li[data-lesion="{lesion["id"]}"]')
            expect(page.locator("#popup")).to_be_visible()
            page.click('#popup button[data-artery="none"]')
            expect(total).not_to_have_attribute("data-value", str(shown))
            after = float(total.get_attribute("data-value") or "nan")
            assert after == pytest.approx(shown - lesion["agatston"], abs=1e-9)
            assert after < shown

            # Reload: the edit persisted (the reader is asked again).
            page.reload()
            page.fill("#reader-name", "Dr Review")
            page.click("#reader-confirm")
            expect(total).to_have_attribute("data-value", re.compile(r"\d"), timeout=30_000)
            assert float(total.get_attribute("data-value") or "nan") == after
            expect(page.locator(f'ul.lesions li[data-lesion="{lesion["id"]}"]')).to_have_class(
                re.compile("removed")
            )

            # The exported edited mask scores, with cacscore score, to what the page shows.
            study_id = page.evaluate("() => viewer.study.id")
            mask_path = tmp_path / "edited.nii.gz"
            mask_path.write_bytes(page.request.get(f"{base}/api/studies/{study_id}/mask.nii.gz").body())
            assert _score_json(case_folder / "image", mask_path)["agatston"] == after

            # The PDF downloads and opens as a one-page PDF.
            with page.expect_download() as download:
                page.click("#export-pdf")
            pdf = Path(download.value.path()).read_bytes()
            assert pdf.startswith(b"%PDF-")
            assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 1

            # Viewer controls: hovering a lesion shows its confidence, window presets, wheel scrolling.
            others = [row for row in state["lesions"] if row["id"] != lesion["id"]]
            second = max(others, key=lambda row: row["agatston"]) if others else lesion
            page.click(f'ul.lesions li[data-lesion="{second["id"]}"]')
            page.keyboard.press("Escape")
            x, y = page.evaluate(_PIXEL_OF_LESION, second["id"])
            page.mouse.move(x, y, steps=3)
            expect(page.locator("#tooltip")).to_contain_text(f"lesion #{second['id']}")
            expect(page.locator("#tooltip")).to_contain_text("confidence 0.87")
            if others:  # N selects the next counted lesion
                page.keyboard.press("n")
                expect(page.locator("#popup")).to_be_visible()
                assert page.evaluate("() => viewer.selectedId") in {row["id"] for row in others}
                page.keyboard.press("Escape")
            page.click('[data-preset="soft"]')
            expect(page.locator("#hud-window")).to_contain_text("W 400 / L 40")
            page.click('[data-preset="calcium"]')
            slice_text = page.locator("#hud-slice").inner_text()
            page.mouse.move(300, 300)
            page.mouse.wheel(0, 120)
            expect(page.locator("#hud-slice")).not_to_have_text(slice_text)
            page.mouse.wheel(0, -120)
            expect(page.locator("#hud-slice")).to_have_text(slice_text)

            # Zoom in and show the lesion with its menu for the screenshot.
            page.keyboard.press("+")
            page.keyboard.press("+")
            page.click(f'ul.lesions li[data-lesion="{second["id"]}"]')
            expect(page.locator("#popup")).to_be_visible()
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "review.png"))

            # Reassign the shown lesion with its menu, then undo twice: back to the automatic score.
            target = "RCA" if second["artery"] != "RCA" else "LCX"
            page.click(f'#popup button[data-artery="{target}"]')
            row = page.locator(f'ul.lesions li[data-lesion="{second["id"]}"] strong')
            expect(row).to_have_text(target)
            assert float(total.get_attribute("data-value") or "nan") == pytest.approx(after, abs=1e-9)
            page.click("#undo")
            expect(row).to_have_text(second["artery"])
            page.click("#undo")
            expect(total).to_have_attribute("data-value", re.compile(r"\d"))
            expect(page.locator(f'ul.lesions li[data-lesion="{lesion["id"]}"]')).not_to_have_class(
                re.compile("removed")
            )
            assert float(total.get_attribute("data-value") or "nan") == pytest.approx(shown, abs=1e-9)
            expect(page.locator("#undo")).to_be_disabled()

            # A rib-sized candidate: counting it asks for confirmation and says why;
            # declining changes nothing.
            rib = page.evaluate(
                "() => viewer.study.candidates.filter((r) => r.warnings.some((w) => w.includes('long')))"
                ".sort((a, b) => b.volume_mm3 - a.volume_mm3)[0]"
            )
            assert rib is not None and rib["volume_mm3"] > 500
            page.click("#candidates-card summary")
            page.click(f'ul.lesions li[data-candidate="{rib["id"]}"]')
            expect(page.locator("#popup")).to_contain_text("unlikely coronary calcium")
            questions: list[str] = []
            page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
            page.click('#popup button[data-artery="LAD"]')
            page.wait_for_function("() => !viewer.busy")  # the round trip is over
            assert len(questions) == 1 and "mm long" in questions[0] and "unlikely" in questions[0]
            assert float(total.get_attribute("data-value") or "nan") == pytest.approx(shown, abs=1e-9)
            page.keyboard.press("Escape")

            # Sign: the name is typed at sign-off; the study becomes read-only.
            expect(page.locator("#export-sr")).to_be_hidden()  # DICOM exports carry only a signed result
            page.click("#sign")
            assert page.input_value("#sign-name") == ""
            page.click("#sign-confirm")
            expect(page.locator("#sign-error")).to_have_text("Type your name to sign.")
            page.fill("#sign-name", "Dr Signer")
            page.click("#sign-confirm")
            expect(page.locator("#study-status")).to_have_text("signed")
            expect(page.locator("#undo")).to_be_disabled()
            assert page.evaluate("() => viewer.state.signed_by") == "Dr Signer"
            # The DICOM exports of the signed result are offered; the SR names the signer as its verifier.
            expect(page.locator("#export-seg")).to_be_visible()
            with page.expect_download() as download:
                page.click("#export-sr")
            sr = pydicom.dcmread(download.value.path())
            assert sr.VerificationFlag == "VERIFIED"
            assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Dr Signer^"
            assert errors == []
        finally:
            browser.close()


#: The attacker's page: a no-cors upload, a no-cors JSON edit and a cross-site form post to the review app.
_ATTACK_PAGE = """<!doctype html><html><body>
<form id="f" method="POST" action="{target}/api/studies/rescan" enctype="multipart/form-data">
<input name="file" value="x"></form>
<script>
async function attack() {{
  const bytes = Uint8Array.from(atob("{nifti}"), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("file", new Blob([bytes]), "scan.nii.gz");
  const results = [];
  for (const [path, body, type] of [["/api/studies", form, null],
      ["/api/studies/1/edits", '{{"version":0,"reviewer":"x","lesion":4,"artery":"LAD"}}', "text/plain"]]) {{
    try {{
      const r = await fetch("{target}" + path, {{ method: "POST", mode: "no-cors", body,
        headers: type ? {{ "Content-Type": type }} : {{}} }});
      results.push(r.type);
    }} catch (e) {{ results.push("error " + e); }}
  }}
  return results;
}}
</script></body></html>"""


def test_cross_site_pages_change_nothing(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import base64
    import http.server
    import sqlite3

    from playwright.sync_api import sync_playwright

    from cacscore.io import write_volume

    from .conftest import known_scorer, synthetic_volume

    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    nifti = write_volume(synthetic_volume(), tmp_path / "scan.nii.gz").read_bytes()
    db = Path(settings.db_url.removeprefix("sqlite:///"))

    with caplog.at_level("WARNING", logger="cacscore.web"), _Server(app) as base:
        page_html = _ATTACK_PAGE.format(target=base, nifti=base64.b64encode(nifti).decode())

        class Attacker(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = page_html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
        threading.Thread(target=attacker.serve_forever, daemon=True).start()
        port = attacker.server_address[1]
        import httpx

        with httpx.Client(base_url=base, headers={"X-Cacscore-Request": "1"}) as direct:
            assert direct.get("/api/studies/1").status_code == 200
            audit_before = direct.get("/api/audit/verify").json()["rows"]
        try:
            with sync_playwright() as playwright:
                # attacker.test resolves to this computer, as a DNS-rebinding name would.
                args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP attacker.test 127.0.0.1"]
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
                try:
                    page = browser.new_page()
                    page.goto(f"http://attacker.test:{port}/")
                    assert page.evaluate("attack()") == ["opaque", "opaque"]
                    with page.expect_navigation():
                        page.evaluate("document.getElementById('f').submit()")
                    assert "refused" in page.content()
                    # The review app under the rebound name: refused before any data is read.
                    response = page.goto(f"http://attacker.test:{base.rsplit(':', 1)[1]}/api/studies")
                    assert response is not None and response.status == 400
                    assert "case_a" not in page.content()
                finally:
                    browser.close()
        finally:
            attacker.shutdown()
            attacker.server_close()
        with httpx.Client(base_url=base, headers={"X-Cacscore-Request": "1"}) as direct:
            studies = direct.get("/api/studies").json()
            assert [row["id"] for row in studies] == [1] and studies[0]["n_edits"] == 0
            assert direct.get("/api/audit/verify").json()["rows"] == audit_before
    assert not settings.upload_dir.exists() or not any(settings.upload_dir.rglob("*"))
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from edits").fetchone() == (0,)
    # The requests did reach the server, which refused them (not the browser).
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    for request in ("POST /api/studies:", "POST /api/studies/1/edits:", "POST /api/studies/rescan:"):
        assert any(line.startswith(request) and "cross-site" in line for line in refused), refused
    assert any("host 'attacker.test:" in line for line in refused), refused


def test_trim_in_the_browser(settings: Settings) -> None:
    """The eraser takes six pixels out of lesion A on slice 2: the total drops by 6 (see test_trim.py)."""
    import sqlite3

    from playwright.sync_api import expect, sync_playwright

    from .conftest import known_scorer

    expect.set_options(timeout=30_000)
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with _Server(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 800})
            page.goto(f"{base}/#/study/1")
            page.fill("#reader-name", "Dr Trim")
            page.click("#reader-confirm")
            total = page.locator("#total-agatston")
            expect(total).to_have_attribute("data-value", re.compile(r"\d"))
            shown = float(total.get_attribute("data-value") or "nan")
            page.evaluate("goToSlice(1)")
            expect(page.locator("#hud-slice")).to_contain_text("Slice 2 /")
            page.click("#tool-erase")
            page.fill("#brush-radius", "1.5")
            x, y = page.evaluate(
                """([row, col]) => { const { sx, sy, ox, oy } = transform();
                   const rect = canvas.getBoundingClientRect();
                   return [rect.left + ox + (col + 0.5) * sx, rect.top + oy + (row + 0.5) * sy]; }""",
                [11, 10],
            )
            page.mouse.click(x, y)
            expect(total).not_to_have_attribute("data-value", str(shown))
            assert float(total.get_attribute("data-value") or "nan") == pytest.approx(shown - 6.0, abs=1e-9)
            expect(page.locator("#edits li").last).to_contain_text("trim lesion #2 (6 voxels on slice 2")

            # The audit chain verifies, and no longer does once a row is changed directly in SQLite.
            verify = "async () => (await fetch('/api/audit/verify')).json()"
            assert page.evaluate(verify) == {"ok": True, "rows": 2, "problems": []}  # first scan + trim
            with sqlite3.connect(settings.db_url.removeprefix("sqlite:///")) as con:
                con.execute("update audit set actor = 'Dr Else' where action = 'trim'")
            check = page.evaluate(verify)
            assert not check["ok"] and check["problems"] == [
                "audit row 2: content changed after it was written",
                "edit 1 of study 1: differs from its audit row",  # the edit names Dr Trim, the row no longer
            ]
        finally:
            browser.close()


def test_a_refused_scan_in_the_browser(settings: Settings) -> None:
    """The test scan has no lungs: the page says why it was not analysed.

    'Analyse anyway' then runs the model.
    """
    from playwright.sync_api import expect, sync_playwright
    from tiny_models import tiny_ensemble

    from cacscore.web.dependencies import ModelScorer

    expect.set_options(timeout=30_000)
    app = create_app(settings)
    scorer = ModelScorer(tiny_ensemble(seed=3))
    app.dependency_overrides[get_scorer] = lambda: scorer
    with _Server(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/#/study/1")
            page.fill("#reader-name", "Dr Domain")
            page.click("#reader-confirm")
            banner = page.locator("#study-refusal")
            expect(banner).to_be_visible()
            expect(banner).to_contain_text("no heart in the field of view: lungs 0 mL left")
            expect(page.locator("#study-status")).to_have_text("refused")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#analyse-anyway")
            expect(banner).to_be_hidden()
            expect(page.locator("#study-status")).to_have_text("analysed")
            assert errors == []
        finally:
            browser.close()
