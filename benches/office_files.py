#!/usr/bin/env python3
"""Writes the spreadsheets and decks the extractor's Office timings in benches/RESULTS.md use
(standard library only):

  empty.xlsx   1,000,000 empty rows, then one cell at XFD1048576, under a whole-grid dimension
  sparse.xlsx  the same, every other row holding two formatted cells without values
  large.xlsx   100,000 rows x 10 columns: shared strings, numbers, dates, formulas, inline text
  large.pptx   500 slides, each a title, 8 bullets, a slide number and speaker notes

usage: python3 benches/office_files.py DIR
"""

import random
import sys
import zipfile
from pathlib import Path

REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
A = "http://schemas.openxmlformats.org/drawingml/2006/main"
P = "http://schemas.openxmlformats.org/presentationml/2006/main"


def workbook(path, sheet_xml, shared=""):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>'
            f'<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<Relationships><Relationship Id="rId1" Type="{REL}/worksheet" '
            f'Target="worksheets/sheet1.xml"/><Relationship Id="rId2" '
            f'Type="{REL}/sharedStrings" Target="sharedStrings.xml"/><Relationship Id="rId3" '
            f'Type="{REL}/styles" Target="styles.xml"/></Relationships>',
        )
        z.writestr(
            "xl/styles.xml",
            f'<styleSheet xmlns="{MAIN}"><cellXfs><xf numFmtId="0"/><xf numFmtId="14"/>'
            f"</cellXfs></styleSheet>",
        )
        z.writestr("xl/sharedStrings.xml", f'<sst xmlns="{MAIN}">{shared}</sst>')
        z.writestr("xl/worksheets/sheet1.xml", sheet_xml)


def sheet(rows, dimension=""):
    return f'<worksheet xmlns="{MAIN}">{dimension}<sheetData>{"".join(rows)}</sheetData></worksheet>'


def empty_rows(with_cells):
    rows = []
    for r in range(1, 1_000_001):
        if with_cells and r % 2:
            rows.append(f'<row r="{r}" spans="1:3"><c r="A{r}" s="1"/><c r="B{r}"></c></row>')
        else:
            rows.append(f'<row r="{r}"/>')
    rows.append(
        '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>needle</t></is></c></row>'
    )
    return sheet(rows, '<dimension ref="A1:XFD1048576"/>')


def large_sheet():
    rng = random.Random(1)
    names = ["Region", "Product", "Units", "Price", "Total", "Date", "Owner", "Status", "Note", "Code"]
    shared = names + [f"item{i}" for i in range(5000)]
    rows = [
        '<row r="1">'
        + "".join(f'<c r="{chr(65 + i)}1" t="s"><v>{i}</v></c>' for i in range(10))
        + "</row>"
    ]
    for r in range(2, 100_002):
        word = lambda: 10 + rng.randrange(5000)  # noqa: E731
        rows.append(
            f'<row r="{r}"><c r="A{r}" t="s"><v>{word()}</v></c><c r="B{r}" t="s"><v>{word()}</v></c>'
            f'<c r="C{r}"><v>{rng.randrange(1000)}</v></c><c r="D{r}"><v>{rng.random() * 100:.2f}</v></c>'
            f'<c r="E{r}"><f>C{r}*D{r}</f><v>{rng.random() * 10000}</v></c>'
            f'<c r="F{r}" s="1"><v>{45000 + rng.randrange(700)}</v></c>'
            f'<c r="G{r}" t="s"><v>{word()}</v></c><c r="H{r}" t="inlineStr"><is><t>open</t></is></c>'
            f'<c r="I{r}" t="str"><f>A{r}&amp;B{r}</f><v>note {r}</v></c><c r="J{r}"><v>{r}</v></c></row>'
        )
    return sheet(rows), "".join(f"<si><t>{s}</t></si>" for s in shared)


def shape(ph, paragraphs):
    ph = f'<p:ph type="{ph}"/>' if ph else ""
    body = "".join(f"<a:p><a:r><a:t>{p}</a:t></a:r></a:p>" for p in paragraphs)
    return (
        f'<p:sp><p:nvSpPr><p:cNvPr id="2" name="x"/><p:cNvSpPr/><p:nvPr>{ph}</p:nvPr></p:nvSpPr>'
        f"<p:spPr/><p:txBody><a:bodyPr/>{body}</p:txBody></p:sp>"
    )


def part(root, shapes):
    return (
        f'<p:{root} xmlns:a="{A}" xmlns:p="{P}" xmlns:r="{REL}"><p:cSld><p:spTree>{shapes}'
        f"</p:spTree></p:cSld></p:{root}>"
    )


def deck(path, slides=500):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        ids = "".join(f'<p:sldId id="{256 + i}" r:id="rId{i + 10}"/>' for i in range(slides))
        z.writestr(
            "ppt/presentation.xml",
            f'<p:presentation xmlns:p="{P}" xmlns:r="{REL}"><p:sldIdLst>{ids}</p:sldIdLst></p:presentation>',
        )
        rels = "".join(
            f'<Relationship Id="rId{i + 10}" Type="{REL}/slide" Target="slides/slide{i + 1}.xml"/>'
            for i in range(slides)
        )
        z.writestr("ppt/_rels/presentation.xml.rels", f"<Relationships>{rels}</Relationships>")
        for i in range(slides):
            bullets = [f"Point {j} of slide {i}: the quarterly numbers improved in region {j}" for j in range(8)]
            z.writestr(
                f"ppt/slides/slide{i + 1}.xml",
                part("sld", shape("title", [f"Slide title {i}"]) + shape("body", bullets) + shape("sldNum", [str(i)])),
            )
            z.writestr(
                f"ppt/slides/_rels/slide{i + 1}.xml.rels",
                f'<Relationships><Relationship Id="rId2" Type="{REL}/notesSlide" '
                f'Target="../notesSlides/notesSlide{i + 1}.xml"/></Relationships>',
            )
            z.writestr(
                f"ppt/notesSlides/notesSlide{i + 1}.xml",
                part("notes", shape("body", [f"Speaker note for slide {i}, remember the demo."])),
            )


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    workbook(out / "empty.xlsx", empty_rows(with_cells=False))
    workbook(out / "sparse.xlsx", empty_rows(with_cells=True))
    large, shared = large_sheet()
    workbook(out / "large.xlsx", large, shared)
    deck(out / "large.pptx")


if __name__ == "__main__":
    main()
