"""Turn guide.md (written for this example) into docs/guide.pdf, the quickstart's source: headings
in bold, paragraphs wrapped, A4. Deterministic: fixed creation date, so the PDF (and every stage
key that hashes it) is the same on every machine."""

from __future__ import annotations

import datetime
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent


def main() -> None:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()
    for block in (HERE / "guide.md").read_text("utf-8").split("\n\n"):
        text = " ".join(block.split())
        heading = text.startswith("#")
        pdf.set_font("Helvetica", "B" if heading else "", 14 if heading else 11)
        pdf.multi_cell(0, 6, text.lstrip("# "))
        pdf.ln(3)
    out = HERE / "docs" / "guide.pdf"
    out.parent.mkdir(exist_ok=True)
    pdf.output(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
