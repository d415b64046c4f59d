#!/usr/bin/env python3
# Makes demo/oncall-scan.png (needs Pillow and the DejaVu fonts): python3 scripts/make-demo-scan.py
# Renders a page of text as a slightly rotated, lightly speckled 300-dpi grayscale "scan".
import random
from PIL import Image, ImageDraw, ImageFont
random.seed(7)
W, H = 2480, 1754  # A4 landscape-ish half page at 300 dpi
img = Image.new("L", (W, H), 245)
d = ImageDraw.Draw(img)
title = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf", 64)
body = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", 44)
lines = [
    ("On-call hand-over note (scanned)", title),
    ("", body),
    ("The on-call engineer carries the pager from Monday 10:00 to the", body),
    ("following Monday 10:00. Hand-over happens in the #ops channel.", body),
    ("", body),
    ("If engram stops answering, first run engram doctor on the host,", body),
    ("then check /readyz. A dead ingest job is retried with", body),
    ("engram jobs retry followed by the job id.", body),
    ("", body),
    ("Escalation: page the platform lead after thirty minutes without", body),
    ("a fix. Write every incident up within two working days.", body),
]
y = 140
for text, font in lines:
    d.text((160, y), text, fill=20, font=font)
    y += 96 if font is body else 120
for _ in range(4000):
    x, yy = random.randrange(W), random.randrange(H)
    d.point((x, yy), fill=random.randrange(60, 200))
img = img.rotate(0.6, resample=Image.BICUBIC, fillcolor=245)
img.save("demo/oncall-scan.png", optimize=True)
