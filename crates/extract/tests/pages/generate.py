#!/usr/bin/env python3
"""Draws the OCR test pages in this folder and their ground truth (`<page>.txt`: exactly the
text drawn, line by line), from the public-domain passages in texts.py.

Needs Python 3 with Pillow (PyPI: `pip install Pillow`; made with Pillow 13.0) and the DejaVu
fonts (Debian: fonts-dejavu-core). Deterministic for a given Pillow and libjpeg: the noise is
seeded. Run from anywhere: `python3 crates/extract/tests/pages/generate.py`.

Each page is one kind a team posts and that stresses OCR preprocessing in its own way:

- small_print_150dpi.jpg: 7.5 pt serif at 150 dpi, a clean grayscale JPEG (anti-aliased
  glyphs about 7 px high; binarising and despeckling them loses strokes).
- photo_uneven_light.jpg: a phone photo: warm paper, light falling off to one corner, 2 degree
  tilt, slight blur and sensor noise, colour JPEG at 72 dpi (what phones write).
- low_contrast.png: a faded copy: grey ink on grey paper, soft edges, 200 dpi.
- inverted.png: light text on a dark background, 200 dpi.
- two_columns.png: a heading across two columns of text, 200 dpi.
- rotated_90.png, rotated_180.png: pages scanned sideways and upside down, light speckle.
- large_type.png: 20 pt type at 300 dpi with heavy speckle (glyph-size normalisation and
  despeckling both matter here: the case where leaving the page raw hurts).

And pages built so that one of the extractor's own heuristics would hurt if applied blindly:

- mixed_sizes.png: a notice whose huge headline holds most of the ink above a paragraph of
  small print (sizing the page for the headline's glyphs would erase the small print).
- dark_picture.png: a dark picture over most of the page above dark text on white (a page that
  is mostly dark but not inverted; its paper is not evenly lit either).
- dot_leaders.png: a table of contents with dot leaders (rows of isolated dots, which a
  despeckler can take for noise).
"""

import math
import os
import random
import sys

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import texts  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FONTS = "/usr/share/fonts/truetype/dejavu"
SERIF = os.path.join(FONTS, "DejaVuSerif.ttf")
SERIF_BOLD = os.path.join(FONTS, "DejaVuSerif-Bold.ttf")
SANS = os.path.join(FONTS, "DejaVuSans.ttf")
SANS_BOLD = os.path.join(FONTS, "DejaVuSans-Bold.ttf")


def font(path, points, dpi):
    return ImageFont.truetype(path, points * dpi / 72.0)


def wrap(text, face, width):
    """Greedy word wrap of paragraphs (blank-line separated); '' marks a paragraph break."""
    lines = []
    for para in text.strip().split("\n\n"):
        words = para.split()
        line = ""
        for word in words:
            trial = word if not line else line + " " + word
            if face.getlength(trial) <= width:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
        lines.append("")
    return lines[:-1]


class Page:
    """A grayscale canvas that records what is drawn, in reading order."""

    def __init__(self, width, height, paper=255):
        self.image = Image.new("L", (width, height), paper)
        self.draw = ImageDraw.Draw(self.image)
        self.truth = []

    def block(self, lines, face, x, y, leading, ink=0):
        """Draw lines from (x, y); returns the y after the last line."""
        for line in lines:
            if line:
                self.draw.text((x, y), line, font=face, fill=ink)
            self.truth.append(line)
            y += leading
        return y

    def heading(self, text, face, x, y, leading, ink=0):
        self.truth.append(text)
        self.truth.append("")
        self.draw.text((x, y), text, font=face, fill=ink)
        return y + leading * 2


def fit(lines, count):
    """The first `count` lines, not ending on a paragraph break."""
    lines = lines[:count]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def save(page, name, image=None, **options):
    (image or page.image).save(os.path.join(HERE, name), **options)
    truth = "\n".join(page.truth).strip() + "\n"
    with open(os.path.join(HERE, name + ".txt"), "w", encoding="utf-8") as f:
        f.write(truth)
    print(f"{name}: {os.path.getsize(os.path.join(HERE, name))} bytes, {len(truth)} chars")


def speckle(image, rng, count, ink=0, sizes=(1, 2, 3)):
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for _ in range(count):
        x, y, s = rng.randrange(w), rng.randrange(h), rng.choice(sizes)
        draw.ellipse((x, y, x + s, y + s), fill=ink)


def small_print():
    dpi = 150
    page = Page(int(8.5 * dpi), 11 * dpi)
    body = font(SERIF, 7.5, dpi)
    title = font(SERIF_BOLD, 9, dpi)
    margin = int(0.55 * dpi)
    width = page.image.width - 2 * margin
    y = page.heading("THE CONSTITUTION OF THE UNITED STATES", title, margin, margin, 20)
    text = texts.CONSTITUTION_I + "\n" + texts.CONSTITUTION_II
    page.block(fit(wrap(text, body, width), 78), body, margin, y, 19)
    save(page, "small_print_150dpi.jpg", quality=75, dpi=(dpi, dpi))


def photo_uneven_light():
    # Drawn at about 170 px per inch of paper, then photographed.
    dpi = 170
    page = Page(1450, 1880)
    body = font(SANS, 11, dpi)
    title = font(SANS_BOLD, 14, dpi)
    margin = 130
    width = page.image.width - 2 * margin
    y = page.heading("The Declaration of Independence", title, margin, 120, 44)
    lines = fit(wrap(texts.DECLARATION, body, width), 50)
    page.block(lines, body, margin, y, 31)
    tilted = page.image.rotate(2.0, resample=Image.BICUBIC, expand=False, fillcolor=255)
    w, h = tilted.size
    # Warm paper and brown-black ink.
    paper, ink = (246, 234, 208), (38, 32, 28)
    bands = [tilted.point(lambda v, p=p, i=i: i + (p - i) * v // 255) for p, i in zip(paper, ink)]
    # Lit from the top left: the light falls to 38% in the far corner.
    corner = math.hypot(w, h)
    light = Image.new("L", (w, h))
    light.putdata(
        [
            int(255 * (1.0 - 0.62 * (math.hypot(x, y) / corner) ** 1.3))
            for y in range(h)
            for x in range(w)
        ]
    )
    bands = [ImageChops.multiply(band, light) for band in bands]
    # Sensor noise (the same in every band, as a luminance grain), then the lens's softness.
    rng = random.Random(7)
    grain = Image.new("L", (w, h))
    grain.putdata([max(0, min(255, int(rng.gauss(128, 5)))) for _ in range(w * h)])
    bands = [ImageChops.add(band, grain, offset=-128) for band in bands]
    photo = Image.merge("RGB", bands).filter(ImageFilter.GaussianBlur(0.8))
    save(page, "photo_uneven_light.jpg", image=photo, quality=80, dpi=(72, 72))


def low_contrast():
    dpi = 200
    paper, ink = 205, 150
    page = Page(int(8.5 * dpi), 11 * dpi, paper=paper)
    body = font(SERIF, 11, dpi)
    title = font(SERIF_BOLD, 13, dpi)
    margin = int(0.9 * dpi)
    width = page.image.width - 2 * margin
    y = page.heading("Amendments to the Constitution", title, margin, margin, 44, ink=ink)
    page.block(wrap(texts.BILL_OF_RIGHTS, body, width), body, margin, y, 40, ink=ink)
    save(page, "low_contrast.png", image=page.image.filter(ImageFilter.GaussianBlur(1.0)))


def inverted():
    dpi = 200
    page = Page(int(8.5 * dpi), 11 * dpi, paper=30)
    body = font(SANS, 10, dpi)
    title = font(SANS_BOLD, 14, dpi)
    margin = int(1.0 * dpi)
    width = page.image.width - 2 * margin
    y = page.heading("Address at Gettysburg", title, margin, margin, 50, ink=235)
    page.block(wrap(texts.GETTYSBURG, body, width), body, margin, y, 38, ink=235)
    save(page, "inverted.png")


def two_columns():
    dpi = 200
    page = Page(int(8.5 * dpi), 11 * dpi)
    body = font(SERIF, 10, dpi)
    title = font(SERIF_BOLD, 16, dpi)
    margin = int(0.75 * dpi)
    gutter = int(0.4 * dpi)
    column = (page.image.width - 2 * margin - gutter) // 2
    y = page.heading("Article II: The Executive", title, margin, margin, 50)
    lines = wrap(texts.CONSTITUTION_II, body, column)
    half = (len(lines) + 1) // 2
    # Break the columns at a line, as typesetters do, not at a paragraph gap.
    if not lines[half - 1]:
        half += 1
    left, right = lines[:half], lines[half:]
    while left and not left[-1]:
        left.pop()
    while right and not right[0]:
        right.pop(0)
    page.block(left, body, margin, y, 36)
    page.truth.append("")
    page.block(right, body, margin + column + gutter, y, 36)
    save(page, "two_columns.png")


def rotated(name, text, heading, transpose, seed):
    dpi = 200
    page = Page(int(8.5 * dpi), 11 * dpi)
    body = font(SANS, 10, dpi)
    title = font(SANS_BOLD, 13, dpi)
    margin = int(1.0 * dpi)
    width = page.image.width - 2 * margin
    y = page.heading(heading, title, margin, margin, 46)
    page.block(fit(wrap(text, body, width), 48), body, margin, y, 36)
    image = page.image.copy()
    speckle(image, random.Random(seed), 400)
    save(page, name, image=image.transpose(transpose))


def large_type():
    dpi = 300
    page = Page(int(8.5 * dpi), 11 * dpi)
    body = font(SERIF, 20, dpi)
    title = font(SERIF_BOLD, 26, dpi)
    margin = int(0.8 * dpi)
    width = page.image.width - 2 * margin
    y = page.heading("Gettysburg, 1863", title, margin, margin, 110)
    page.block(fit(wrap(texts.GETTYSBURG, body, width), 22), body, margin, y, 100)
    image = page.image.filter(ImageFilter.GaussianBlur(1.2))
    speckle(image, random.Random(11), 9000, ink=40, sizes=(1, 2, 3, 4, 5))
    save(page, "large_type.png", image=image)


def mixed_sizes():
    dpi = 200
    page = Page(int(8.5 * dpi), 11 * dpi)
    huge = font(SERIF_BOLD, 40, dpi)
    small = font(SERIF, 8, dpi)
    margin = int(0.7 * dpi)
    width = page.image.width - 2 * margin
    y = margin
    for line in ["PUBLIC NOTICE", "Four score and", "seven years ago"]:
        y = page.block([line], huge, margin, y, 130)
    page.truth.append("")
    y += 40
    lines = fit(wrap(texts.GETTYSBURG, small, width), 9)
    page.block(lines, small, margin, y, 27)
    save(page, "mixed_sizes.png")


def dark_picture():
    dpi = 200
    w, h = int(8.5 * dpi), 11 * dpi
    page = Page(w, h)
    # A dark photograph: a noisy gradient with lighter shapes, over the top 62% of the page.
    rng = random.Random(13)
    picture_h = int(h * 0.62)
    picture = Image.new("L", (w, picture_h))
    picture.putdata(
        [
            max(0, min(255, int(25 + 60 * y / picture_h + rng.gauss(0, 8))))
            for y in range(picture_h)
            for x in range(w)
        ]
    )
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x, y, r = rng.randrange(w), rng.randrange(picture_h), rng.randrange(40, 160)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rng.randrange(60, 140))
    page.image.paste(picture.filter(ImageFilter.GaussianBlur(3)), (0, 0))
    body = font(SERIF, 10, dpi)
    margin = int(0.8 * dpi)
    lines = fit(wrap(texts.DECLARATION, body, w - 2 * margin), 17)
    page.block(lines, body, margin, picture_h + 50, 36)
    save(page, "dark_picture.png")


def dot_leaders():
    dpi = 200
    page = Page(int(8.5 * dpi), 11 * dpi)
    body = font(SERIF, 11, dpi)
    title = font(SERIF_BOLD, 14, dpi)
    margin = int(1.0 * dpi)
    right = page.image.width - margin
    y = page.heading("Contents", title, margin, margin, 56)
    entries = [
        ("Preamble", 1), ("Article I. The Legislative Branch", 1), ("Section 1. Congress", 1),
        ("Section 2. The House of Representatives", 2), ("Section 3. The Senate", 3),
        ("Section 4. Elections and Meetings", 4), ("Section 5. Rules and Journals", 4),
        ("Section 6. Compensation", 5), ("Section 7. Revenue Bills", 5),
        ("Section 8. Powers of Congress", 6), ("Section 9. Limits on Congress", 8),
        ("Section 10. Limits on the States", 9), ("Article II. The Executive Branch", 10),
        ("Article III. The Judicial Branch", 14), ("Article IV. The States", 16),
        ("Article V. Amendment", 18), ("Article VI. Debts, Supremacy, Oaths", 19),
        ("Article VII. Ratification", 20), ("Amendments I to X: the Bill of Rights", 21),
    ]
    dot = body.getlength(". ")
    for name, number in entries:
        number = str(number)
        start = margin + body.getlength(name + " ")
        end = right - body.getlength(" " + number)
        dots = int((end - start) // dot)
        line = name + " " + ". " * dots
        page.draw.text((margin, y), line, font=body, fill=0)
        page.draw.text((right - body.getlength(number), y), number, font=body, fill=0)
        page.truth.append(line.rstrip() + " " + number)
        y += 44
    save(page, "dot_leaders.png")


if __name__ == "__main__":
    small_print()
    photo_uneven_light()
    low_contrast()
    inverted()
    two_columns()
    rotated("rotated_90.png", texts.DECLARATION, "A Declaration", Image.ROTATE_90, 3)
    rotated("rotated_180.png", texts.BILL_OF_RIGHTS, "The Bill of Rights", Image.ROTATE_180, 5)
    large_type()
    mixed_sizes()
    dark_picture()
    dot_leaders()
