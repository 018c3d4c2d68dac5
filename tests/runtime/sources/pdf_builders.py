"""PDFs built on the spot for the extraction tests: text pages with fpdf2 (a TrueType font, so
ligature glyphs and any Unicode reach the text layer), image-only pages rendered with Pillow, and
encrypted or damaged variants written with pypdf."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject, StreamObject

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
if not DEJAVU.exists():
    raise RuntimeError(f"{DEJAVU} is missing: apt-get install fonts-dejavu-core (scripts/setup.sh does)")
A4_MM = (210, 297)
MM_PER_INCH = 25.4


class _Document(FPDF):
    """A4 pages with an optional running header and a "Page N of M" footer."""

    def __init__(self, header: str | None, footer: bool) -> None:
        super().__init__(format="A4")
        self.running_header, self.page_footer = header, footer
        self.add_font("DejaVu", fname=str(DEJAVU))
        self.set_font("DejaVu", size=11)

    def header(self) -> None:
        if self.running_header:
            self.set_font("DejaVu", size=9)
            self.cell(0, 8, self.running_header, align="C")
            self.ln(12)
            self.set_font("DejaVu", size=11)

    def footer(self) -> None:
        if self.page_footer:
            self.set_y(-15)
            self.set_font("DejaVu", size=9)
            self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")


def text_pdf(pages: Sequence[Sequence[str]], header: str | None = None, footer: bool = False) -> bytes:
    """A PDF with a text layer: each page a list of paragraphs; a paragraph's own newlines become
    line breaks (so a test decides where words are hyphenated), and paragraphs are 4 mm apart."""
    pdf = _Document(header, footer)
    for paragraphs in pages:
        pdf.add_page()
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph)
            pdf.ln(4)
    return bytes(pdf.output())


def render_lines(lines: Sequence[str], dpi: int = 300, size_pt: float = 12) -> Image.Image:
    """An A4 page image (grayscale) with ``lines`` in DejaVu Sans at ``size_pt`` points."""
    width, height = (round(mm / MM_PER_INCH * dpi) for mm in A4_MM)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(DEJAVU), round(size_pt / 72 * dpi))
    line_height = round(size_pt / 72 * dpi * 1.6)
    margin = round(dpi * 0.8)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_height), line, font=font, fill=0)
    return image


def image_pdf(pages: Sequence[Sequence[str]]) -> bytes:
    """A PDF whose pages are images of text only: no text layer at all (a scan)."""
    pdf = FPDF(format="A4")
    for lines in pages:
        pdf.add_page()
        pdf.image(render_lines(lines), x=0, y=0, w=A4_MM[0], h=A4_MM[1])
    return bytes(pdf.output())


def encrypted(data: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    """``data`` encrypted with pypdf (RC4-128: no extra crypto package needed)."""
    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def with_damaged_page(data: bytes, index: int, keep_drawing: bool) -> bytes:
    """``data`` with page ``index`` (0-based) ending in a content stream cut off inside an inline
    image, as an interrupted write leaves it: pypdf cannot parse that page. With ``keep_drawing``
    the page's own drawing comes first (poppler still renders it); without, only a 1-point dot
    (pypdf parses only streams that show text)."""
    writer = PdfWriter(clone_from=io.BytesIO(data))
    page = writer.pages[index]
    drawing = page.get_contents().get_data() if keep_drawing else b"BT /F1 1 Tf (.) Tj ET"
    stream = StreamObject()
    stream.set_data(drawing + b"\nBI /W 10 /H 10 /BPC 8 /CS /G ID \x00\x01")
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def excerpt(source: Path, indices: Sequence[int]) -> bytes:
    """Pages ``indices`` (0-based) of the PDF at ``source``, fonts and all, as a new PDF."""
    reader = PdfReader(source)
    writer = PdfWriter()
    for index in indices:
        writer.add_page(reader.pages[index])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
