"""End to end: office documents, an e-book, a scanned PDF and images written by others (their
sources: tests/fixtures/DOCUMENTS.md) go through `POST /api/assets` on the local stack (the
vision model and Textract on their local stand-ins, RapidOCR underneath) and each is found
first by a question about a passage inside it, with where in it the passage is."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

# path: (question, the kind, what the first result's location must hold)
FILES = {
    "office/officer-example.docx": (
        "Which Word file has a table of plant measurements for petals, sepals, bracts and internodes?",
        "document", {"section": "Sub title 2"}),
    "office/officer-example.pptx": (
        "a slide showing an unordered list of paragraphs next to an ordered list", "presentation", {"slide": 2}),
    "office/readxl-deaths.xlsx": (
        "the astronaut who died in December 2016 at the age of 95", "spreadsheet", {"sheet": "other"}),
    "office/odfpy-countrystatistics.ods": (
        "population density of Belgium in people per square kilometre", "spreadsheet", {"sheet": "Population"}),
    "office/odfpy-api-manual.odt": (
        "a library that sits just above the XML format to stop programmers creating invalid documents",
        "document", {"section": "Introduction"}),
    "office/childrens-literature.epub": (
        "villagers secretly keep paying the old piper his salary after his piping is no longer of any use",
        "ebook", {"section": "FAIRY STORIES"}),
    "scanned/huckfinn-chapter3-page29-scan.pdf": (
        "praying every day got him a fish-line but no hooks", "pdf", {"page": 1}),
    "images/tesseract-eurotext.png": (
        "what share of the e-mail from the spammer's address is spam", "image", {"section": "Text in the image"}),
    "images/skimage-page-region-segmentation.png": (
        "determine markers of the coins and the background for region-based segmentation", "image",
        {"section": "Text in the image"}),
    "images/xmp-bluesquare-described.jpg": (
        "the BlueSquare test file created in Photoshop CS2", "image", {"section": "Description ("}),
    "images/pillow-issue-973-fax-3pages.tif": (
        "cannot save a TIF file whose page number tag has the value 0/0", "image",
        {"section": "Text in the image"}),
}


@pytest.fixture(scope="module")
def things(tmp_path_factory, fixture_server):
    """A stack of this module's own (its documents change no other test's answers), with every file
    submitted and finished."""
    from tests.e2e.conftest import RunningStack

    running = RunningStack(tmp_path_factory.mktemp("things"))
    ids = {}
    for path in FILES:
        response = running.http.post("/api/assets", json={"url": f"{fixture_server}/{path}"})
        assert response.status_code == 202, (path, response.text)
        ids[path] = response.json()["id"]
    finished = {path: running.wait_for(asset_id, timeout_s=600) for path, asset_id in ids.items()}
    yield running, finished
    running.stop()


def test_every_file_becomes_searchable_as_its_kind_with_a_title_where_it_has_one(things):
    _, finished = things
    for path, asset in finished.items():
        assert asset["status"] == "SEARCHABLE", (path, asset.get("error"))
        assert asset["kind"] == FILES[path][1], (path, asset["kind"], asset["content_type"])
    assert finished["office/odfpy-api-manual.odt"]["title"].startswith("Application Programmer")
    assert finished["office/childrens-literature.epub"]["title"].startswith("Children's Literature")


@pytest.mark.parametrize("path", list(FILES))
def test_a_question_about_a_passage_finds_its_file_first_with_where_the_passage_is(things, path):
    stack, finished = things
    question, _, where = FILES[path]
    results = stack.http.get("/api/search", params={"q": question, "limit": 5}).json()["results"]
    assert results and results[0]["asset"]["id"] == finished[path]["id"], \
        [(r["asset"]["url"].rsplit("/", 1)[-1], r["snippet"][:80]) for r in results]
    location = results[0].get("location")
    assert location, results[0]
    for key, value in where.items():
        if isinstance(value, str):
            assert value in location.get(key, ""), location
        else:
            assert location.get(key) == value, location


def test_an_image_has_a_thumbnail_served_through_a_redirect_and_a_document_has_none(things):
    stack, finished = things
    image = finished["images/tesseract-eurotext.png"]
    assert image["thumbnail_url"] == f"/api/assets/{image['id']}/thumbnail"
    redirect = stack.http.get(image["thumbnail_url"], follow_redirects=False)
    assert redirect.status_code == 302
    thumb = stack.http.get(redirect.headers["location"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image

    assert max(Image.open(BytesIO(thumb.content)).size) <= 320
    document = finished["office/readxl-deaths.xlsx"]
    assert "thumbnail_url" not in document
    missing = stack.http.get(f"/api/assets/{document['id']}/thumbnail", follow_redirects=False)
    assert missing.status_code == 404 and missing.json()["error"]["message"]


def test_the_kind_filter_takes_the_new_kinds(things):
    stack, finished = things
    results = stack.http.get("/api/search", params={"q": "population density", "kind": "spreadsheet"}).json()
    assert {r["asset"]["kind"] for r in results["results"]} == {"spreadsheet"}
    listed = stack.http.get("/api/assets", params={"kind": "image,ebook", "limit": 50}).json()["assets"]
    assert {a["kind"] for a in listed} == {"image", "ebook"}
