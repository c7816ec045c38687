"""A job's results as one zip: per page NAME.txt/.alto.xml/.page.xml/.hocr, the book, recognitions.csv.

``recognitions.csv`` is the results log people keep: one row per line,
``file, page, line, text, confidence, model, time`` (UTF-8 with BOM, as the
recognitions CSV export, so spreadsheet programs read the Arabic).
"""

from __future__ import annotations

import csv
import io
import zipfile

from ..csv_export import spreadsheet_cell
from .models import Job, Page, PageLine

SUFFIXES = {"txt": ".txt", "alto": ".alto.xml", "page": ".page.xml", "hocr": ".hocr"}
CSV_COLUMNS = ["file", "page", "line", "text", "confidence", "model", "time"]


def book_file_name(job: Job) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in job.name.rsplit(".", 1)[0]).strip("_")
    return f"{stem or 'book'}.book.txt"


def write_results_zip(job: Job, out) -> None:
    """Write the zip to the binary file ``out``, one page at a time (a big book never sits in memory twice)."""
    pages = Page.objects.filter(job=job).order_by("index")
    book = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for page in pages.filter(status=Page.Status.DONE).defer("outputs").iterator():
            outputs = Page.objects.values_list("outputs", flat=True).get(pk=page.pk)
            for fmt in job.formats:
                archive.writestr(f"pages/{page.name}{SUFFIXES[fmt]}", outputs[fmt])
            book.append(outputs["txt"].rstrip("\n"))
        archive.writestr(book_file_name(job), "\n\n".join(book) + "\n")
        archive.writestr("recognitions.csv", recognitions_csv(job))


def recognitions_csv(job: Job) -> str:
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    lines = (PageLine.objects.filter(page__job=job).select_related("page", "recognition__model_version")
             .order_by("page__index", "index"))
    for line in lines.iterator():
        recognition = line.recognition
        # the file name is the uploader's and the text may be a reviewer's: neither may run as a formula
        writer.writerow([spreadsheet_cell(v) for v in (
            line.page.source_name, line.page.number, line.index, recognition.final_text,
            f"{recognition.confidence:.4f}", f"{recognition.model_version.name}:{recognition.model_version.version}",
            recognition.created_at.isoformat())])
    return out.getvalue()
